"""Benchmark 8: the API process's memory over thousands of tasks, with glibc's malloc arenas capped (as
server.py does) and not (`MALLOC_ARENA_MAX=0`: glibc's default, up to 8 arenas per core).

The soak's clients (bench/soak.py: submit, poll, cancel, fetch and check every image) drive the real server at
demo speed 1000 until N tasks have ended, in one arm and then the other; the API process's RSS is sampled
every few hundred tasks. Issue 14 (item 17) saw 64.5 → 113.8 MB over 6,000 tasks; tracemalloc showed the
Python heap flat (27.9 → 28.3 MB) and malloc_trim gave back at most 3 MB: the growth was freed memory kept in
many per-thread arenas, not a leak.

    python -m bench.api_memory [--tasks 3000]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.machine import rss_bytes
from bench.report import Section, Table, Verdict, print_section
from bench.soak import Books, Client, Settings
from harness.server_process import RunningServer

TARGET_GROWTH_MB = 16.0  # from the first samples (a few hundred tasks: imports, caches, thread stacks) to the end


@dataclass(frozen=True)
class Config:
    tasks: int = 3000
    clients: int = 8
    sample_every: int = 250


def one_arm(config: Config, env: dict[str, str]) -> list[tuple[int, float]]:
    """(tasks ended, RSS MB) samples of one server run."""
    with tempfile.TemporaryDirectory(prefix="mflux-memory-") as temporary:
        server = RunningServer(Path(temporary) / "data", ("--no-previews",), demo_speed=1000, env=env)
        server.start(timeout=120)
        try:
            books, stop = Books(), threading.Event()
            settings = Settings(seconds=10**6, clients=config.clients, demo_speed=1000, poison_share=0.0)
            clients = [Client(i, server.url, books, settings, stop) for i in range(config.clients)]
            for client in clients:
                client.start()
            samples, next_sample = [], 0
            while True:
                with books.lock:
                    ended = sum(1 for r in books.records if r.fetched or r.status in ("failed", "cancelled"))
                if ended >= next_sample:
                    samples.append((ended, (rss_bytes(server.process.pid) or 0) / 2**20))
                    next_sample += config.sample_every
                if ended >= config.tasks:
                    break
                time.sleep(0.2)  # the sampling interval, not a sync
            stop.set()
            for client in clients:
                client.finished.wait(120)
            server.stop(timeout=60)
            return samples
        finally:
            server.kill()


def run(config: Config = Config()) -> Section:
    began = time.monotonic()
    arms = {"capped at 2 arenas (server.py)": {}, "glibc's default (MALLOC_ARENA_MAX=0)": {"MALLOC_ARENA_MAX": "0"}}
    results = {name: one_arm(config, env) for name, env in arms.items()}
    table = Table(
        ["arenas", *[f"{n} tasks" for n, _ in next(iter(results.values()))], "growth after warm-up"],
        caption="API process RSS (MB) against tasks ended",
    )
    growth = {}
    for name, samples in results.items():
        warm = samples[min(2, len(samples) - 1)][1]  # after ~500 tasks: imports, caches and thread stacks are in
        growth[name] = samples[-1][1] - warm
        table.add(name, *[f"{mb:.1f}" for _, mb in samples], f"{growth[name]:+.1f} MB")
    capped, default = growth.values()
    end_capped, end_default = (samples[-1][1] for samples in results.values())
    return Section(
        key="api_memory",
        title="8. API memory over thousands of tasks",
        setup=f"{config.clients} soak clients at demo speed 1000 until {config.tasks} tasks have ended, once with "
        "the server's cap of two malloc arenas and once with glibc's default; RSS of the API process.",
        tables=[table],
        verdicts=[
            Verdict(
                "API RSS growth after warm-up, capped",
                f"≤ {TARGET_GROWTH_MB:g} MB over {config.tasks} tasks",
                f"{capped:+.1f} MB (default arenas: {default:+.1f} MB)",
                capped <= TARGET_GROWTH_MB,
            ),
        ],
        notes=[
            f"At the end: {end_capped:.1f} MB capped against {end_default:.1f} MB with the default arenas "
            f"({end_default / max(end_capped, 1):.2f}×, one run)."
        ],
        data={"samples": {name: samples for name, samples in results.items()}, "growth": growth},
        seconds=time.monotonic() - began,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=Config.tasks)
    parser.add_argument("--json", action="store_true", help="print the section as JSON, not Markdown")
    args = parser.parse_args(argv)
    print_section(run(Config(tasks=args.tasks)), args.json)


if __name__ == "__main__":
    main()
