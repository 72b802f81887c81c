"""Run every benchmark (or those named) and rewrite BENCHMARKS.md with the figures of this one run.

python -m bench [--only idle_gap,polling_load] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path

from bench import (
    api_memory,
    forecast_accuracy,
    idle_gap,
    mac_mflux,
    model_switching,
    polling_load,
    queue_scale,
    scale_out,
    soak,
)
from bench.machine import this_machine
from bench.report import ROOT, Section, Verdict, document

BENCHMARKS = {
    "idle_gap": lambda: idle_gap.run(),
    "polling_load": lambda: polling_load.run(),
    "forecast_accuracy": lambda: forecast_accuracy.run(),
    "queue_scale": lambda: queue_scale.run(),
    "mac_mflux": lambda: mac_mflux.run(mac_mflux.Config(dry_run=True)),
    "model_switching": lambda: model_switching.run(),
    "scale_out": lambda: scale_out.run(),
    "api_memory": lambda: api_memory.run(),
}

INTRO = """
Every figure below comes from one run of the command underneath, on the machine it names, against the real
server process (`server.py`: waitress and its worker process) on loopback, with the demo engine unless said
otherwise. `python -m bench.<name>` runs one benchmark alone; bench/__init__.py lists them. Each section says
how its cores were shared: this machine is a 2-core virtual machine, and "everything else on the machine"
counts processes that are not part of the benchmark (on a shared machine, other people's work), which slow
the server down and widen its tails without any change in the server.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    command = "python -m bench" + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:]))
    started = datetime.now().astimezone()
    sections = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            section = BENCHMARKS[name]()
        except Exception as error:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            section = Section(
                key=name,
                title=f"{name}: failed",
                setup=f"The benchmark stopped with {type(error).__name__}: {error}",
                verdicts=[Verdict(name, "runs", f"{type(error).__name__}", False)],
                seconds=time.monotonic() - began,
            )
        print(f"  {name}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        for verdict in section.verdicts:
            print(f"  {verdict.what}: {verdict.measured} -> {verdict.mark}", file=sys.stderr, flush=True)
        sections.append(section)
    text = document("Benchmarks", INTRO, command, this_machine(), started, sections)
    soak_section = soak.recorded_section(args.output)  # the soak runs on its own, for minutes; keep its figures
    args.output.write_text(text, encoding="utf-8")
    if soak_section:
        soak.record(soak_section, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
