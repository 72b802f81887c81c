"""Benchmark 2: responsiveness under polling load while the engine is generating.

16 clients (keep-alive connections) each poll the status of their own waiting task as fast as the server
answers, for 10 s, while the engine works on a long task; then the same with a mix of /api/tasks pages and
/api/generate submissions. The load comes from bench/loadgen.py, a separate process that costs a few
percent of one core; the report says how the two cores were shared. The original server answered about
1,300 status requests a second at p99 ≈ 18 ms with 16 connections on this kind of machine.

    python -m bench.polling_load [--seconds 10] [--connections 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

from bench.harness import Api, running_server
from bench.loadgen import LoadResult, RequestKind, run_load
from bench.machine import CpuMeter, CpuUsage
from bench.report import Section, Table, Verdict, print_section
from bench.stats import SUMMARY_HEADERS, Summary, milliseconds

ORIGINAL_RATE = 1300.0  # status requests per second, the original server, 16 connections
TARGET_RATE = 2 * ORIGINAL_RATE
TARGET_P99 = 0.018

SMALL_TASK = {"prompt": "submitted under load", "width": 256, "height": 256, "steps": 2}


@dataclass(frozen=True)
class Config:
    seconds: float = 10.0
    connections: int = 16
    demo_speed: float = 1.0  # the engine's long task below then lasts ~100 s: busy throughout
    fewer_threads: int | None = 6  # the mix again on a server with this many threads (a diagnosis, not a target)
    ungated: bool = True  # the mix again without the admission gate (api/slots.py): what the gate buys
    one_permit: bool = True  # ... and with one request at a time let in, not two
    default_switch: bool = True  # ... and at Python's own GIL switch interval (5 ms), not the server's 2 ms


SMOKE = Config(seconds=1.0, connections=4, fewer_threads=None, ungated=False, one_permit=False, default_switch=False)

STATUS_ONLY = [RequestKind("status", 1.0)]
MIX = [
    RequestKind("status", 0.90),
    RequestKind("tasks", 0.05, path="/api/tasks?limit=50"),
    RequestKind("generate", 0.05, method="POST", path="/api/generate", body=json.dumps(SMALL_TASK).encode()),
]


def run(config: Config = Config()) -> Section:
    began = time.monotonic()
    results, still_busy = _measure(config, None, (("status", STATUS_ONLY), ("mix", MIX)))
    if config.fewer_threads:
        fewer, _ = _measure(config, config.fewer_threads, (("mix", MIX),))
        results[f"mix, --threads {config.fewer_threads}"] = fewer["mix"]
    if config.ungated:
        ungated, _ = _measure(config, None, (("mix", MIX),), extra=("--admitted-requests", "0"))
        results["mix, no admission gate"] = ungated["mix"]
    if config.one_permit:
        single, _ = _measure(config, None, (("mix", MIX),), extra=("--admitted-requests", "1"))
        results["mix, --admitted-requests 1"] = single["mix"]
    if config.default_switch:
        python_default, _ = _measure(config, None, (("mix", MIX),), extra=("--gil-switch-ms", "5"))
        results["mix, --gil-switch-ms 5"] = python_default["mix"]

    table = Table(["Load", "req/s", "failed", *SUMMARY_HEADERS[1:], "server CPU", "load gen. CPU", "others' CPU"])
    kinds_table = Table(["Load", "Request", *SUMMARY_HEADERS], caption="Latency per kind of request")
    verdicts, data = [], {}
    for name, (result, usage) in results.items():
        overall = Summary.of(result.all_latencies)
        rate = result.completed / result.seconds
        cores = usage.processes
        others = "-" if usage.others is None else f"{usage.others:.2f}"
        label = {"status": "status only", "mix": "mix 90/5/5"}.get(name, f"{name} (diagnosis)")
        table.add(label, f"{rate:,.0f}", result.failed, *overall.ms(), f"{cores.get('server', 0):.2f}",
                  f"{cores.get('load generator', 0):.2f}", others)  # fmt: skip
        for kind, latencies in result.latencies.items():
            kinds_table.add(label, kind, *[*[len(latencies)], *Summary.of(latencies).ms()])
        data[name] = {
            "rate": rate,
            "failed": result.failed,
            "errors": result.errors[:10],
            "statuses": result.statuses,
            "latency": overall.__dict__,
            "cpu": usage.processes,
            "others_cpu": usage.others,
        }
        no_failures = result.failed == 0
        if name == "status":
            met = rate >= TARGET_RATE and overall.p99 <= TARGET_P99 and no_failures
            verdicts.append(Verdict(
                "status polling, 16 connections", f"≥ {TARGET_RATE:,.0f} req/s, p99 ≤ 18 ms, 0 failed",
                f"{rate:,.0f} req/s, p99 {milliseconds(overall.p99)}, {result.failed} failed", met,
            ))  # fmt: skip
        elif name == "mix":
            met = overall.p99 <= TARGET_P99 and no_failures
            verdicts.append(Verdict(
                "mixed load (status, tasks, generate)", "p99 ≤ 18 ms, 0 failed",
                f"{rate:,.0f} req/s, p99 {milliseconds(overall.p99)}, {result.failed} failed", met,
            ))  # fmt: skip
    data["engine_busy_throughout"] = still_busy
    notes = [f"The engine was still busy with the long task at the end: {still_busy}."]
    if config.fewer_threads or config.ungated or config.one_permit or config.default_switch:
        notes.append(
            "The diagnosis rows are the mix again: on a server started with `--threads "
            f"{config.fewer_threads}` instead of the default 16; without the admission gate "
            "(`--admitted-requests 0`); with one request at a time let in instead of two "
            "(`--admitted-requests 1`); and at Python's own GIL switch interval, 5 ms, instead of the server's 2 ms "
            "(`--gil-switch-ms 5`, the server before this setting). Not targets: a diagnosis of the mix's tail."
        )
    mix, _ = results["mix"]
    slow = {kind: Summary.of(values) for kind, values in mix.latencies.items()}
    notes.append(
        "Where the mixed load's time goes: p50/p99 "
        + ", ".join(f"{kind} {milliseconds(s.p50)}/{milliseconds(s.p99)}" for kind, s in slow.items())
        + ". Every request, status polls included, waits its turn at the admission gate (api/slots.py), first "
        "come, first served; two at a time run the app's Python. Without the gate, task pages and submissions "
        "(several SQLite statements, each giving up the GIL for every column it reads) wait for the GIL again "
        "and again behind 15 polling threads: compare the row without it. In this closed loop every connection "
        "always has a request in flight, so a request's wait is mostly the work of those ahead of it: the tail "
        "follows the cost of a task page and a submission."
    )
    return Section(
        key="polling_load",
        title="2. Responsiveness under polling load while generating",
        setup=f"""
The engine works on one long task (1024×1024, 50 steps at `--demo-speed {config.demo_speed:g}`, ~100 s) for the
whole benchmark; {config.connections} other tasks wait behind it, one per client. {config.connections}
keep-alive connections from a separate load-generator process (bench/loadgen.py: one `selectors` loop,
pre-encoded requests, closed loop like wrk) each send their next request as soon as the previous answer
is complete, for {config.seconds:g} s per load. *Status only*: each connection polls its own task's
`/api/status`. *Mix*: 90 % status, 5 % `/api/tasks?limit=50`, 5 % `POST /api/generate` (256×256, 2 steps).
CPU columns are average cores; "others" is every process on the machine that is not part of the benchmark.
""",
        tables=[table, kinds_table],
        verdicts=verdicts,
        notes=notes,
        data=data,
        seconds=time.monotonic() - began,
    )


def _measure(
    config: Config,
    threads: int | None,
    loads: tuple[tuple[str, list[RequestKind]], ...],
    extra: tuple[str, ...] = (),
) -> tuple[dict[str, tuple[LoadResult, CpuUsage]], bool]:
    """Start a server, keep its engine busy, and run each load against it."""
    # Every load-generator connection comes from 127.0.0.1, one "client" to the per-client limit.
    args = ["--max-waiting", "100000", "--max-waiting-per-client", "100000", *extra]
    if threads:
        args += ["--threads", str(threads)]
    results: dict[str, tuple[LoadResult, CpuUsage]] = {}
    with running_server(demo_speed=config.demo_speed, args=args) as server:
        api = Api(server.url)
        blocker = api.generate({"prompt": "long task", "width": 1024, "height": 1024, "steps": 50})["task_id"]
        api.wait_until([blocker], ("running",), timeout=30, interval=0.01)
        polled = [api.generate({**SMALL_TASK, "prompt": f"client {i}"})["task_id"] for i in range(config.connections)]
        pids = {"server": server.process.pid, "worker": server.worker_pid()}
        for name, kinds in loads:
            meter = CpuMeter(pids).start()
            result = run_load(server.url, kinds, polled, config.connections, config.seconds)
            meter.add("load generator", result.generator_cpu_seconds)
            results[name] = (result, meter.stop())
        still_busy = api.status(blocker)["status"] == "running"
    return results, still_busy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=Config.seconds)
    parser.add_argument("--connections", type=int, default=Config.connections)
    parser.add_argument("--json", action="store_true", help="print the section as JSON, not Markdown")
    args = parser.parse_args(argv)
    print_section(run(Config(seconds=args.seconds, connections=args.connections)), args.json)


if __name__ == "__main__":
    main()
