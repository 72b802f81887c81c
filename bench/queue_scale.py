"""Benchmark 4: the scale of the queue.

(a) 10,000 waiting tasks behind one long task: the latency of each `POST /api/generate` as the queue grows,
    of `/api/status` for waiting tasks anywhere in the queue, and of `/api/tasks` pages (`limit`/`offset`).
(b) The API process's memory (RSS, from /proc) across 5,000 images generated, fetched and deleted: images
    live on disk, so it must stay flat.

    python -m bench.queue_scale [--waiting 10000] [--images 5000] [--json]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from bench.harness import Api, running_server
from bench.machine import CpuMeter, rss_bytes
from bench.report import Section, Table, Verdict, print_section
from bench.stats import SUMMARY_HEADERS, Summary, milliseconds

TARGET_P99 = 0.010
TARGET_RSS_GROWTH = 50e6
MB = 1e6


@dataclass(frozen=True)
class Config:
    waiting: int = 10_000
    status_samples: int = 2_000
    page: int = 100
    images: int = 5_000
    image_side: int = 256
    batch: int = 50  # images in flight at once in (b)
    seed: int = 5


SMOKE = Config(waiting=60, status_samples=20, page=10, images=20, batch=10)


def run(config: Config = Config()) -> Section:
    began = time.monotonic()
    rng = random.Random(config.seed)
    limits = ["--max-waiting", str(2 * config.waiting), "--max-waiting-per-client", str(2 * config.waiting)]
    with running_server(demo_speed=1.0, args=limits) as server:
        api = Api(server.url)
        meter = CpuMeter({"server": server.process.pid, "worker": server.worker_pid()}).start()
        rss_before = rss_bytes(server.process.pid)
        queue = _fill_queue(api, config, rng)
        statuses = _status_latencies(api, rng.sample(queue.ids, min(config.status_samples, len(queue.ids))))
        pages, deep_pages, big_page = _page_latencies(api, config)
        rss_full = rss_bytes(server.process.pid)
        usage_a = meter.stop()
    with running_server(demo_speed=500.0) as server:
        memory = _memory_over_images(api := Api(server.url), server.process.pid, server.data_dir, config)
        del api

    submits, last_submits = Summary.of(queue.latencies), Summary.of(queue.latencies[-max(len(queue.ids) // 10, 1) :])
    status, page_summary = Summary.of(statuses), Summary.of(pages)
    table = Table(["Request", *SUMMARY_HEADERS])
    table.add(f"POST /api/generate, queue 0 → {config.waiting:,}", *_row(submits))
    table.add(f"POST /api/generate, last 10 % (queue ≥ {config.waiting * 9 // 10:,})", *_row(last_submits))
    table.add("GET /api/status, random waiting tasks", *_row(status))
    table.add(f"GET /api/tasks?limit={config.page}, every page from offset 0", *_row(page_summary))
    deep = Summary.of(deep_pages)
    table.add(f"GET /api/tasks?limit={config.page}, pages past offset {config.waiting // 2:,}", *_row(deep))
    table.add("GET /api/tasks?limit=1000 (first page)", *_row(Summary.of(big_page)))

    mem_table = Table(["Images generated and fetched", "API process RSS"], caption="Memory of the API process, (b)")
    for count, rss in memory.samples:
        mem_table.add(f"{count:,}", f"{rss / MB:.1f} MB")
    growth = memory.samples[-1][1] - memory.samples[0][1]
    verdicts = [
        Verdict(f"POST /api/generate with up to {config.waiting:,} waiting", "p99 < 10 ms",
                f"p99 {milliseconds(submits.p99)} (last 10 %: {milliseconds(last_submits.p99)})",
                submits.p99 < TARGET_P99),
        Verdict(f"GET /api/status with {config.waiting:,} waiting", "p99 < 10 ms", f"p99 {milliseconds(status.p99)}",
                status.p99 < TARGET_P99),
        Verdict(f"GET /api/tasks pages of {config.page}", "paginated, fast (p99 < 10 ms)",
                f"p99 {milliseconds(page_summary.p99)}", page_summary.p99 < TARGET_P99),
        Verdict(f"API RSS across {memory.samples[-1][0]:,} images", "growth < 50 MB",
                f"{growth / MB:+.1f} MB ({memory.samples[0][1] / MB:.0f} → {memory.samples[-1][1] / MB:.0f} MB)",
                growth < TARGET_RSS_GROWTH),
    ]  # fmt: skip
    notes = [
        f"(a) API process RSS: {_mb(rss_before)} before the queue was filled, {_mb(rss_full)} with "
        f"{config.waiting:,} waiting tasks; {usage_a.describe()}.",
        f"(b) {memory.bytes / MB:.0f} MB of images passed through the API; {memory.left_on_disk} file(s) left in "
        f"the image directory afterwards; every image was checked to be a non-empty JPEG.",
    ]
    if not all(v.met for v in verdicts[:3]):
        others = "unknown" if usage_a.others is None else f"{usage_a.others:.2f}"
        notes.append(
            f"Medians: POST {milliseconds(submits.p50)}, status {milliseconds(status.p50)}, page of {config.page} "
            f"{milliseconds(page_summary.p50)}. These are one client's sequential requests (everything else on the "
            f"machine used {others} of its 2 cores on average during (a)). A submission extends the queue's plan in "
            "place (a priority task goes in behind the other priority tasks and moves everyone behind it by its "
            "time); one that grouping by model or several workers could place elsewhere has the whole queue "
            "planned again, about a tenth of a second at 10,000 waiting. A page "
            f"costs more than a status: {config.page} rows read, forecast and serialized, and `offset` walks the "
            "queue's index from its head."
        )
    return Section(
        key="queue_scale",
        title="4. Scale of the queue",
        setup=f"""
(a) One long task holds the engine (2048×2048, 100 steps at `--demo-speed 1`) while one client posts
{config.waiting:,} tasks one after another (sizes 256²–1024², 1–8 steps, 5 % priority) over a keep-alive
connection; then `/api/status` of {config.status_samples:,} waiting tasks picked at random, and `/api/tasks`
page by page ({config.page} per page, `offset` 0 to the end), and a few pages of 1,000. The server runs with
`--max-waiting {2 * config.waiting} --max-waiting-per-client {2 * config.waiting}` (defaults: 10,000 and 1,000).
(b) A fresh server at `--demo-speed 500`: {config.images:,} images ({config.image_side}×{config.image_side} JPEG),
{config.batch} at a time: submitted, waited for, fetched (and so deleted); the API process's RSS is read from
/proc every {max(config.images // 10, 1):,} images.
""",
        tables=[table, mem_table],
        verdicts=verdicts,
        notes=notes,
        data={
            "submit": submits.__dict__,
            "status": status.__dict__,
            "pages": page_summary.__dict__,
            "rss_samples": memory.samples,
            "rss_growth": growth,
            "images_bytes": memory.bytes,
            "left_on_disk": memory.left_on_disk,
        },
        seconds=time.monotonic() - began,
    )


def _row(summary: Summary) -> list[str]:
    return [f"{summary.count:,}", *summary.ms()]


def _mb(value: int | None) -> str:
    return "unknown" if value is None else f"{value / MB:.0f} MB"


@dataclass
class _Queue:
    ids: list[str]
    latencies: list[float]


def _fill_queue(api: Api, config: Config, rng: random.Random) -> _Queue:
    blocker = api.generate({"prompt": "long task", "width": 2048, "height": 2048, "steps": 100})["task_id"]
    api.wait_until([blocker], ("running",), timeout=30, interval=0.01)
    ids, latencies = [], []
    for i in range(config.waiting):
        body = {
            "prompt": f"waiting task {i}",
            "width": rng.choice((256, 512, 768, 1024)),
            "height": rng.choice((256, 512, 768, 1024)),
            "steps": rng.randint(1, 8),
            "priority": rng.random() < 0.05,
        }
        before = time.perf_counter()
        ids.append(api.generate(body)["task_id"])
        latencies.append(time.perf_counter() - before)
    return _Queue(ids, latencies)


def _status_latencies(api: Api, task_ids: list[str]) -> list[float]:
    latencies = []
    for task_id in task_ids:
        before = time.perf_counter()
        answer = api.status(task_id)
        latencies.append(time.perf_counter() - before)
        if answer["status"] != "waiting":
            raise RuntimeError(f"task {task_id} is {answer['status']}, not waiting")
    return latencies


def _page_latencies(api: Api, config: Config) -> tuple[list[float], list[float], list[float]]:
    def timed(limit: int, offset: int) -> tuple[float, list[dict], int]:
        before = time.perf_counter()
        tasks, total = api.tasks(limit=limit, offset=offset)
        return time.perf_counter() - before, tasks, total

    pages, deep, seen = [], [], 0
    while True:
        elapsed, tasks, total = timed(config.page, seen)
        if not tasks:
            break
        pages.append(elapsed)
        if seen >= config.waiting // 2:
            deep.append(elapsed)
        seen += len(tasks)
    if seen != total or total < config.waiting:
        raise RuntimeError(f"paging saw {seen} tasks of {total}")
    big = [timed(1000, 0)[0] for _ in range(5)]
    return pages, deep, big


@dataclass
class _Memory:
    samples: list[tuple[int, int]]  # (images so far, RSS bytes)
    bytes: int
    left_on_disk: int


def _memory_over_images(api: Api, pid: int, data_dir, config: Config) -> _Memory:
    side = config.image_side
    samples = [(0, rss_bytes(pid) or 0)]
    every = max(config.images // 10, 1)
    done = total_bytes = 0
    while done < config.images:
        count = min(config.batch, config.images - done)
        ids = [
            api.generate({"prompt": f"image {done + i}", "seed": done + i, "width": side, "height": side, "steps": 1})[
                "task_id"
            ]
            for i in range(count)
        ]
        api.wait_until(ids, ("done",), timeout=120, interval=0.01)
        for task_id in ids:
            data = api.image(task_id)
            if not data.startswith(b"\xff\xd8"):
                raise RuntimeError(f"task {task_id}: not a JPEG")
            total_bytes += len(data)
        before, done = done, done + count
        if done // every != before // every or done == config.images:
            samples.append((done, rss_bytes(pid) or 0))
    left = sum(1 for _ in (data_dir / "images").iterdir())
    return _Memory(samples, total_bytes, left)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiting", type=int, default=Config.waiting)
    parser.add_argument("--images", type=int, default=Config.images)
    parser.add_argument("--json", action="store_true", help="print the section as JSON, not Markdown")
    args = parser.parse_args(argv)
    print_section(run(Config(waiting=args.waiting, images=args.images)), args.json)


if __name__ == "__main__":
    main()
