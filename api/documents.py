"""The limits of core/rules.py and the server's models, written into the OpenAPI document at start-up.

They are server options (`--max-side`, `--models`, a LoRA library…), so a static schema cannot carry them;
without them the document promised that any integer width, or any model name, would do. Each API passes its
own names for the fields.
"""

from __future__ import annotations

from collections.abc import Mapping

from core import rules
from core.models import QUANTIZE_BITS
from core.rules import Limits
from taskqueue.service import TaskService


def document_ranges(properties: dict, limits: Limits, names: Mapping[str, str | None] | None = None) -> None:
    """minimum/maximum of every numeric request field this API has, under its own name (None: documented
    by the API itself, e.g. a seed whose -1 means random)."""
    for field, (low, high) in rules.ranges(limits).items():
        name = (names or {}).get(field, field)
        if name is not None and name in properties:
            properties[name].update(minimum=low, maximum=high)


def document_prompts(properties: dict, limits: Limits, prompt: str = "prompt", negative: str = "negative_prompt"):
    properties[prompt].update(minLength=1, maxLength=limits.max_prompt_chars, pattern=rules.REQUIRED_TEXT_PATTERN)
    if negative in properties:
        properties[negative].update(maxLength=limits.max_prompt_chars, pattern=rules.TEXT_PATTERN)


def model_spellings(service: TaskService, from_text_only: bool = False) -> list[str]:
    """Every name and alias of every offered model (`from_text_only`: of those that need no input image)."""
    return [
        spelling
        for m in service.models()
        if m.offered and not (from_text_only and m.info.needs_image)
        for spelling in m.info.spellings
    ]


def document_models(
    properties: dict, service: TaskService, components: dict | None = None, from_text_only: bool = False
) -> None:
    """`model`, `quantize` and `loras` of a request: what this server offers (`from_text_only`: the models that
    need no input image, e.g. for a new default)."""
    if "model" in properties:
        nullable = properties["model"].get("nullable", False)
        spellings = model_spellings(service, from_text_only)
        properties["model"]["enum"] = [*spellings, *([None] if nullable else [])]
    if "quantize" in properties:
        properties["quantize"]["enum"] = [*QUANTIZE_BITS, None]
    if "loras" in properties:
        names = service.lora_names()
        if not names:
            properties["loras"]["maxItems"] = 0
        elif components is not None and "Lora" in components:
            components["Lora"]["properties"]["name"]["enum"] = names
            components["Lora"]["properties"]["scale"].update(minimum=-4.0, maximum=4.0)
