"""The README's options table is the server's real command line: no option missing, none invented."""

from __future__ import annotations

import re
from pathlib import Path

import server

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_option_is_in_the_readme_table_and_every_row_is_an_option():
    parser_options = {
        option
        for action in server.build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    table = README.read_text(encoding="utf-8").split("## Options", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(--[a-z0-9_-]+)`", table, flags=re.M))
    assert documented == parser_options


def models_table() -> str:
    """The README's table of mflux models, from the catalog the server serves (read from the installed mflux)."""
    from core.engines import EngineConfig
    from worker.engines.mflux.catalog import catalog

    negative = {"never": "no", "with-cfg": "with guidance > 1", "always": "yes"}
    rows = [
        "| model | also called | kind | steps | guidance | negative prompt | memory, bf16 |",
        "|---|---|---|---:|---:|---|---:|",
    ]
    for model in catalog(EngineConfig(engine="mflux")).models:
        aliases = ", ".join(f"`{alias}`" for alias in model.aliases)
        rows.append(
            f"| `{model.name}` | {aliases} | {model.kind.value} | {model.default_steps} | {model.default_guidance:g} "
            f"| {negative[model.negative_prompt]} | {model.memory_gb:g} GB |"
        )
    return "\n".join(rows)


def test_the_readme_lists_every_model_the_mflux_engine_serves():
    """Regenerate with: python -c 'from tests.test_readme import models_table; print(models_table())'"""
    expected = models_table()
    assert expected in README.read_text(encoding="utf-8"), "README's model table is stale; it should be:\n" + expected
