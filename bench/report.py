"""What a benchmark reports, and how it is written down: sections of tables and target verdicts in Markdown."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import Machine

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"*{self.caption}*", ""] if self.caption else []
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    """One target of the issue and how this run measured up to it."""

    what: str
    target: str
    measured: str
    met: bool | None  # None: not judged here (e.g. it needs a Mac)

    @property
    def mark(self) -> str:
        return {True: "met", False: "**missed**", None: "not run here"}[self.met]


@dataclass
class Section:
    key: str  # module name, e.g. "idle_gap"
    title: str
    setup: str  # what was run, in prose
    tables: list[Table] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the raw figures, for the smoke tests and --json
    seconds: float = 0.0

    def markdown(self, level: int = 2) -> str:
        parts = [f"{'#' * level} {self.title}", "", self.setup.strip(), ""]
        if self.verdicts:
            verdicts = Table(["Target", "Goal", "Measured", "Result"])
            for v in self.verdicts:
                verdicts.add(v.what, v.target, v.measured, v.mark)
            parts += [verdicts.markdown(), ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        parts += [f"- {note}" for note in self.notes]
        if self.notes:
            parts.append("")
        parts.append(f"*(this benchmark took {self.seconds:.0f} s)*")
        return "\n".join(parts)


def git_revision() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes" if dirty.strip() else "")


def header(command: str, machine: Machine, started: datetime) -> str:
    return "\n".join([
        f"- Command: `{command}`",
        f"- Date: {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine.describe()}",
        f"- Code: {git_revision()}",
    ])  # fmt: skip


def document(title: str, intro: str, command: str, machine: Machine, started: datetime, sections: list[Section]) -> str:
    summary = Table(["Benchmark", "Target", "Goal", "Measured", "Result"])
    for section in sections:
        for v in section.verdicts:
            summary.add(section.title, v.what, v.target, v.measured, v.mark)
    parts = [f"# {title}", "", intro.strip(), "", header(command, machine, started), "", "## Summary", ""]
    parts += [summary.markdown(), ""]
    for section in sections:
        parts += [section.markdown(), ""]
    return "\n".join(parts).rstrip() + "\n"


def print_section(section: Section, as_json: bool = False) -> None:
    if as_json:
        json.dump(asdict(section), sys.stdout, indent=2, default=str)
        print()
    else:
        print(section.markdown())
