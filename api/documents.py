"""The limits of core/rules.py, written into the OpenAPI document at start-up.

They are server options (`--max-side`, `--max-steps`, …), so a static schema cannot carry them; without them
the document promised that any integer width would do. Each API passes its own names for the fields.
"""

from __future__ import annotations

from collections.abc import Mapping

from core import rules
from core.rules import Limits


def document_ranges(properties: dict, limits: Limits, names: Mapping[str, str | None] | None = None) -> None:
    """minimum/maximum of every numeric request field this API has, under its own name (None: documented
    by the API itself, e.g. a seed whose -1 means random)."""
    for field, (low, high) in rules.ranges(limits).items():
        name = (names or {}).get(field, field)
        if name is not None and name in properties:
            properties[name].update(minimum=low, maximum=high)


def document_prompts(
    properties: dict, limits: Limits, prompt: str = "prompt", negative: str = "negative_prompt"
) -> None:
    properties[prompt].update(minLength=1, maxLength=limits.max_prompt_chars, pattern=rules.REQUIRED_TEXT_PATTERN)
    if negative in properties:
        properties[negative].update(maxLength=limits.max_prompt_chars, pattern=rules.TEXT_PATTERN)
