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
    documented = set(re.findall(r"^\| `(--[a-z0-9-]+)`", table, flags=re.M))
    assert documented == parser_options
