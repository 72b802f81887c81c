"""Benchmark 3: how true are the server's forecasts?

A seeded mixed workload (widths and heights 256–1536 independently, so non-square too; 1–8 steps; some
priority tasks; one cancellation) arrives as a Poisson process at ~85 % load on the demo engine, whose cost
has the structure of a diffusion transformer (text encoding, per-step cost growing faster than linearly
with pixels, decoding, ±3 % noise). The server is restarted (SIGTERM, same data directory) part-way, while
tasks wait. Reported: the mean absolute percentage error of `expected_time_seconds` at submission against
the real submission-to-image time, and of `wait_remaining` sampled through each task's wait; for the first
5 tasks (the prior), the rest, and around the restart (the learned model must survive it).

    python -m bench.forecast_accuracy [--tasks 45] [--demo-speed 3] [--seed 3] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import RunningServer
from bench.report import Section, Table, Verdict, print_section
from bench.stats import percent
from bench.workload import Accuracy, Driver, Outcome, TaskSpec, mixed_workload
from worker.engines.demo.catalog import COSTS

FIRST = 5
TARGET_FIRST = 0.25
TARGET_REST = 0.10


@dataclass(frozen=True)
class Config:
    tasks: int = 45
    seed: int = 3
    demo_speed: float = 3.0  # the whole workload then takes about two minutes of engine time
    utilization: float = 0.85  # arrivals keep the engine this busy on average, so queues form and drain
    restart_after: int = 25  # the server is restarted when this many tasks have been submitted


SMOKE = Config(tasks=8, demo_speed=40.0, restart_after=5)


def demo_seconds(spec: TaskSpec, speed: float) -> float:
    """What the demo engine's cost model says a task takes (noise aside): to pace the arrivals."""
    mp, costs = spec.megapixels, COSTS["demo"]
    busy = costs.text_encode + spec.steps * costs.nominal_step(mp) + costs.decode_per_mp * mp
    return busy / speed


def workload(config: Config) -> list[TaskSpec]:
    specs = mixed_workload(config.tasks, config.seed, mean_gap=1.0)
    mean_service = sum(demo_seconds(s, config.demo_speed) for s in specs) / len(specs)
    scale = mean_service / config.utilization
    return [dataclasses.replace(s, at=s.at * scale) for s in specs]


def run(config: Config = Config()) -> Section:
    began_run = time.monotonic()
    specs = workload(config)
    with tempfile.TemporaryDirectory(prefix="mflux-bench-") as temporary:
        data_dir = Path(temporary) / "data"
        server = RunningServer(data_dir, demo_speed=config.demo_speed).start()
        driver = Driver(server.url)
        try:
            driver.start_sampling()
            began = time.monotonic()
            driver.play(specs[: config.restart_after], began)
            waiting_at_restart = sum(1 for i in driver.submitted if i.status == "waiting")
            driver.pause_sampling()
            stopped, restart_wall = time.monotonic(), time.time()
            server.stop()
            server = RunningServer(data_dir, demo_speed=config.demo_speed).start()
            downtime = time.monotonic() - stopped
            driver.switch(server.url)
            # The later arrivals keep their spacing, counted from the restart.
            driver.play(specs[config.restart_after :], began + downtime)
            driver.wait_all(timeout=600)
            outcomes = driver.outcomes()
            cancelled = driver.cancelled()
        finally:
            driver.stop()
            server.stop()

    groups = _groups(outcomes, restart_wall)
    table = Table(["Tasks", "n", "expected_time MAPE", "wait_remaining MAPE", "samples", "worst expected error"])
    for label, members in groups.items():
        acc = Accuracy.of(members)
        table.add(label, acc.tasks, percent(acc.expected_mape), percent(acc.remaining_mape), acc.samples,
                  percent(acc.worst))  # fmt: skip
    per_task = Table(
        ["#", "size", "steps", "priority", "run", "forecast", "actual", "error", "wait_remaining MAPE"],
        caption="Every task, in submission order",
    )
    for o in outcomes:
        remaining = sum(o.sample_errors) / len(o.sample_errors) if o.sample_errors else float("nan")
        per_task.add(o.spec.index, f"{o.spec.width}×{o.spec.height}", o.spec.steps, "yes" if o.spec.priority else "",
                     "after restart" if o.phase else "", f"{o.expected:.2f} s", f"{o.actual:.2f} s", percent(o.error),
                     percent(remaining))  # fmt: skip

    first, rest, restarted = (Accuracy.of(groups[k]) for k in _VERDICT_GROUPS)
    verdicts = [
        _verdict("first 5 tasks (the prior)", first, TARGET_FIRST),
        _verdict("after the first 5", rest, TARGET_REST),
        _verdict("first 5 submitted after the restart", restarted, TARGET_REST),
    ]
    total_engine = sum(o.engine_seconds or 0 for o in outcomes)
    return Section(
        key="forecast_accuracy",
        title="3. Forecast accuracy",
        setup=f"""
{config.tasks} tasks (seed {config.seed}): widths and heights drawn independently from 256 to 1536 in steps
of 128, 1–8 steps, {sum(s.priority for s in specs)} with priority, one cancelled a second after it is
submitted; Poisson arrivals paced for {config.utilization:.0%} load on the demo engine at
`--demo-speed {config.demo_speed:g}`. The server is stopped (SIGTERM) and started again on the same data
directory after {config.restart_after} submissions, with {waiting_at_restart} task(s) waiting and one on the
engine; the later arrivals keep their spacing. `expected_time_seconds` is compared with the server's own
submission-to-image time (`end_time - start_time` in `/api/tasks`); `wait_remaining` is sampled every
0.25 s from submission to the end, and samples taken in a task's last second are not scored (a percentage of
almost nothing). MAPE of `wait_remaining` is the mean per task, then over tasks.
""",
        tables=[table, per_task],
        verdicts=verdicts,
        notes=[
            f"{len(outcomes)} tasks finished, {len(cancelled)} cancelled; {total_engine:.0f} s of engine time in all; "
            f"the restart took {downtime:.1f} s (stop, start, engine loaded).",
            "Tasks waiting or running across the restart are shown apart: their forecasts could not know the "
            "server would be down, and the running one starts again from scratch.",
        ],
        data={
            label: dataclasses.asdict(Accuracy.of(members)) | {"ids": [o.task_id for o in members]}
            for label, members in groups.items()
        }
        | {"cancelled": len(cancelled), "finished": len(outcomes)},
        seconds=time.monotonic() - began_run,
    )


_VERDICT_GROUPS = ("first 5", "after the first 5 (restart aside)", "first 5 after the restart")


def _groups(outcomes: list[Outcome], restart: float) -> dict[str, list[Outcome]]:
    # Submitted before the restart, finished after it: the server was down in the middle of their wait.
    straddling = [o for o in outcomes if o.phase == 0 and o.ended >= restart]
    clean = [o for o in outcomes if o not in straddling]
    after = [o for o in outcomes if o.phase == 1]
    return {
        "first 5": [o for o in clean if o.spec.index < FIRST],
        "after the first 5 (restart aside)": [o for o in clean if o.spec.index >= FIRST],
        "first 5 after the restart": after[:FIRST],
        "all submitted after the restart": after,
        "waiting or running across the restart": straddling,
        "all": outcomes,
    }


def _verdict(what: str, accuracy: Accuracy, target: float) -> Verdict:
    met = accuracy.expected_mape <= target and accuracy.remaining_mape <= target
    measured = f"{percent(accuracy.expected_mape)} / {percent(accuracy.remaining_mape)}"
    return Verdict(what, f"MAPE ≤ {target:.0%} (expected / remaining)", measured, met)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=Config.tasks)
    parser.add_argument("--demo-speed", type=float, default=Config.demo_speed)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--json", action="store_true", help="print the section as JSON, not Markdown")
    args = parser.parse_args(argv)
    config = Config(tasks=args.tasks, demo_speed=args.demo_speed, seed=args.seed)
    print_section(run(dataclasses.replace(config, restart_after=min(config.restart_after, args.tasks // 2))), args.json)


if __name__ == "__main__":
    main()
