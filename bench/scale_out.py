"""Benchmark 7: several workers on Redis — throughput against one worker, forecasts over unequal workers, chaos.

Every worker is a real `mflux-server-worker` process on the demo engine, talking to a real `redis-server` and
the real server on loopback (`--no-local-worker`: every worker takes the same path). The demo engine's time is
spent waiting, not computing, so several workers on this 2-core machine behave as several machines would.

1. Throughput: the same batch of tasks, all queued at once, on 1, 2 and 3 equal workers: the speed-up of the
   last image's time against one worker.
2. Forecast over unequal workers: three workers at demo speeds 1, 2 and 4 (an M1 Air, an M2 Pro and an M3 Ultra,
   so to speak), a Poisson stream of mixed sizes at ~85 % load: the error of `expected_time_seconds` after the
   first 12 tasks (the speeds are learned, per worker and model), on the `mac` cost profile (not the
   forecaster's formula).
3. Chaos: three workers, one killed (SIGKILL) or paused (SIGSTOP, for longer than the heartbeat) at random every
   few seconds and started again, Redis restarted once; every task must end done, once.

    python -m bench.scale_out [--tasks 24] [--json]
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import Section, Table, Verdict, print_section
from bench.stats import percent
from bench.workload import PROMPTS, Accuracy, Driver, TaskSpec
from harness.remote import RedisServer, RunningWorker
from harness.server_process import RunningServer, wait_for

TARGET_SPEEDUP_TWO = 1.9
TARGET_MAPE = 0.15


@dataclass(frozen=True)
class Config:
    tasks: int = 24  # throughput batch
    speed: float = 2.0  # demo speed of the equal workers
    forecast_tasks: int = 48
    chaos_tasks: int = 60
    chaos_seconds: float = 40.0
    seed: int = 7


SMOKE = Config(tasks=6, speed=20.0, forecast_tasks=16, chaos_tasks=12, chaos_seconds=10.0)


class Cluster:
    """redis-server, the server (API and scheduler only) and its workers, in one temporary directory."""

    def __init__(self, root: Path, server_args: tuple[str, ...] = ()) -> None:
        self.redis = RedisServer(root / "redis").start()
        self.server = RunningServer(root / "data", ("--broker", self.redis.url, "--no-local-worker",
                                                    "--max-waiting-per-client", "100000", *server_args))  # fmt: skip
        self.server.start(wait_ready=False)
        self.workers: dict[str, RunningWorker] = {}

    def add(self, name: str, speed: float, *args: str) -> RunningWorker:
        worker = RunningWorker(self.redis.url, name, args, demo_speed=speed).start()
        self.workers[name] = worker
        return worker

    def ready(self, *names: str, timeout: float = 60) -> None:
        def all_ready() -> bool:
            states = {w["name"]: w["state"] for w in self.server.get("/api/workers").json()}
            return all(states.get(name) in ("ready", "busy", "loading") for name in names)

        wait_for(all_ready, timeout, interval=0.1, what=f"workers {names}")

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.server.stop()
        self.redis.stop()


def run(config: Config = Config()) -> Section:
    began = time.monotonic()
    throughput = {count: _throughput(config, count) for count in (1, 2, 3)}
    forecast = _unequal_forecast(config)
    chaos = _chaos(config)
    speedup = {count: throughput[1] / seconds for count, seconds in throughput.items()}
    rows = Table(["Workers", "last image", "speed-up"])
    for count, seconds in throughput.items():
        rows.add(count, f"{seconds:.1f} s", f"{speedup[count]:.2f}×")
    chaos_rows = Table(["Submitted", "done", "re-run", "lost", "done twice", "kills", "pauses", "Redis restarts"])
    chaos_rows.add(chaos["submitted"], chaos["done"], chaos["rerun"], chaos["lost"], chaos["duplicated"],
                   chaos["kills"], chaos["pauses"], 1)  # fmt: skip
    verdicts = [
        Verdict("speed-up, two workers", f"≥ {TARGET_SPEEDUP_TWO}×", f"{speedup[2]:.2f}×",
                speedup[2] >= TARGET_SPEEDUP_TWO),
        Verdict("speed-up, three workers", "> two workers'", f"{speedup[3]:.2f}×", speedup[3] > speedup[2]),
        Verdict("forecast over unequal workers, after warm-up", f"MAPE ≤ {TARGET_MAPE:.0%}",
                percent(forecast.expected_mape), forecast.expected_mape <= TARGET_MAPE),
        Verdict("chaos: lost", "0", str(chaos["lost"]), chaos["lost"] == 0),
        Verdict("chaos: done twice", "0", str(chaos["duplicated"]), chaos["duplicated"] == 0),
    ]  # fmt: skip
    return Section(
        key="scale_out",
        title="7. Several workers on Redis: throughput, unequal workers, chaos",
        setup=f"""
Real `redis-server`, the server with `--no-local-worker`, and `mflux-server-worker` processes on the demo engine,
all on this machine's loopback. Throughput: {config.tasks} tasks of 512×512, 6 steps, queued at once, on 1, 2 and
3 workers at demo speed {config.speed:g}. Forecast: {config.forecast_tasks} tasks of mixed sizes, Poisson at
~85 % load, on three workers at demo speeds 1, 2 and 4 with the `mac` cost profile; MAPE of
`expected_time_seconds` over the tasks after the first 12. Chaos: {config.chaos_tasks} tasks over
{config.chaos_seconds:g} s, a worker killed (SIGKILL) or paused past its heartbeat (SIGSTOP) every 3-6 s and started
again, Redis restarted once half-way.
""",
        tables=[rows, chaos_rows],
        verdicts=verdicts,
        data={"throughput": throughput, "speedup": speedup, "forecast": forecast.__dict__, "chaos": chaos},
        seconds=time.monotonic() - began,
    )


def _throughput(config: Config, count: int) -> float:
    with tempfile.TemporaryDirectory(prefix="mflux-bench-") as temporary:
        cluster = Cluster(Path(temporary))
        try:
            names = [f"w{i}" for i in range(count)]
            for name in names:
                cluster.add(name, config.speed)
            cluster.ready(*names)
            warm = [cluster.server.generate("warm-up", width=64, height=64, steps=1) for _ in names]
            for task_id in warm:
                cluster.server.wait_status(task_id, timeout=120)
            began = time.monotonic()
            ids = [cluster.server.generate(f"batch {i}", width=512, height=512, steps=6, seed=i)
                   for i in range(config.tasks)]  # fmt: skip
            for task_id in ids:
                cluster.server.wait_status(task_id, timeout=600)
            return time.monotonic() - began
        finally:
            cluster.close()


def _unequal_forecast(config: Config) -> Accuracy:
    rng = random.Random(config.seed)
    speeds = {"air": 1.0, "pro": 2.0, "ultra": 4.0}
    specs, at = [], 0.0
    for index in range(config.forecast_tasks):
        side = rng.choice((256, 384, 512, 640))
        specs.append(TaskSpec(index, rng.choice(PROMPTS), rng.randrange(2**31), side, side, rng.randint(2, 6), at=at))
        at += rng.expovariate(1 / 0.55)  # ~85 % of the three workers' combined pace, for these tasks
    with tempfile.TemporaryDirectory(prefix="mflux-bench-") as temporary:
        cluster = Cluster(Path(temporary))
        driver = None
        try:
            for name, speed in speeds.items():
                cluster.add(name, speed, "--demo-profile", "mac")
            cluster.ready(*speeds)
            driver = Driver(cluster.server.url)
            driver.start_sampling()
            driver.play(specs, time.monotonic())
            driver.wait_all(timeout=900)
            outcomes = driver.outcomes()
        finally:
            if driver is not None:
                driver.stop()
            cluster.close()
    return Accuracy.of([o for o in outcomes if o.spec.index >= 12])


def _chaos(config: Config) -> dict:
    rng = random.Random(config.seed + 1)
    with tempfile.TemporaryDirectory(prefix="mflux-bench-") as temporary:
        cluster = Cluster(Path(temporary))
        kills = pauses = 0
        try:
            names = ["a", "b", "c"]
            for name in names:
                cluster.add(name, 8.0)
            cluster.ready(*names)
            ids: list[str] = []
            began = time.monotonic()
            next_fault, restarted = began + rng.uniform(3, 6), False
            gap = config.chaos_seconds / config.chaos_tasks
            while time.monotonic() - began < config.chaos_seconds or len(ids) < config.chaos_tasks:
                if len(ids) < config.chaos_tasks:
                    side = rng.choice((256, 512, 768))
                    ids.append(cluster.server.generate(f"chaos {len(ids)}", width=side, height=side, steps=4))
                now = time.monotonic()
                if now >= next_fault:
                    name = rng.choice(names)
                    worker = cluster.workers[name]
                    if rng.random() < 0.5:
                        worker.kill()
                        kills += 1
                    else:
                        worker.signal(signal.SIGSTOP)
                        pauses += 1
                        wait_for(lambda n=name: _state(cluster, n) == "lost", 30, interval=0.2, what="the pause seen")
                        worker.signal(signal.SIGCONT)
                    if worker.process.poll() is not None:
                        cluster.add(name, 8.0)
                    next_fault = now + rng.uniform(3, 6)
                if not restarted and now - began > config.chaos_seconds / 2:
                    cluster.redis.restart()
                    restarted = True
                time.sleep(gap)  # the pace of submissions (a load generator's, not a synchronisation)
            for task_id in ids:
                cluster.server.wait_status(task_id, "done", "failed", timeout=600)
            tasks = {t["task_id"]: t for t in cluster.server.get("/api/tasks", params={"limit": 10000}).json()}
            log = "\n".join(cluster.server.lines)
            done = [task_id for task_id in ids if tasks.get(task_id, {}).get("status") == "done"]
            return {
                "submitted": len(ids),
                "done": len(done),
                "failed": sum(1 for task_id in ids if tasks.get(task_id, {}).get("status") == "failed"),
                "rerun": sum(1 for task_id in ids if tasks.get(task_id, {}).get("attempts", 1) > 1),
                "lost": sum(1 for task_id in ids if tasks.get(task_id, {}).get("status") not in ("done", "failed")),
                "duplicated": sum(1 for task_id in ids if len(re.findall(rf"task {task_id} done", log)) > 1),
                "kills": kills,
                "pauses": pauses,
            }
        finally:
            cluster.close()


def _state(cluster: Cluster, name: str) -> str | None:
    return next((w["state"] for w in cluster.server.get("/api/workers").json() if w["name"] == name), None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=Config.tasks)
    parser.add_argument("--json", action="store_true", help="print the section as JSON, not Markdown")
    args = parser.parse_args(argv)
    print_section(run(Config(tasks=args.tasks)), args.json)


if __name__ == "__main__":
    main()
