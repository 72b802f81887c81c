"""Soak: many clients submit, poll, cancel and fetch for N minutes while the worker is SIGKILLed or paused at
random and the data disk fills up for a while; then the books are checked.

    python -m bench.soak --minutes 10          # and record the figures in BENCHMARKS.md ("Soak" section)
    python -m bench.soak --minutes 1 --no-record

Every accepted task must end accounted for: done with its image fetched, decoded and carrying its own prompt
and seed; failed with a reason; or cancelled. Anything else is lost, and lost must be 0. Also counted: 5xx
answers (must be 0; a 503 from /api/health while the worker restarts is its documented meaning, counted
apart), connection errors, the API process's resident memory over the run, and the files left in the image
directory and the SQLite store's integrity after a graceful stop.

Faults: a chaos thread SIGKILLs the worker (its pid from /api/health) at random moments, only once the engine
has loaded (two deaths while loading halt the supervisor, by design), or pauses it (SIGSTOP, SIGCONT a few
seconds later: a GPU hang the watchdog must catch once it outlasts --hung-after-seconds); a small share of
prompts carry the demo engine's `[demo-fault:step-1]` marker, which kill the worker every time they run and must
end failed; and half-way through, the data directory (a tmpfs of its own, in a private mount namespace where
the machine allows one) is filled to the last byte for a while and then freed.
tests/test_soak_smoke.py runs this for 20 seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
from PIL import Image

from bench.machine import rss_bytes, this_machine
from harness.mounts import fill_here, free_here, mounts_allowed, tmpfs_mounted
from harness.server_process import RunningServer
from worker.encoding import read_metadata

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
START_MARK, END_MARK = "<!-- soak:start -->", "<!-- soak:end -->"
_SECTION = re.compile(re.escape(START_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
POISON = "[demo-fault:step-1]"
SIZES = [(256, 256), (512, 512), (512, 768), (768, 512), (1024, 1024)]
FORMATS = ["JPEG", "PNG", "WEBP"]
PROMPT_SPICE = ["", " 🦊", " שועל", " \u202eRTL", " tab\tand\nnewline", " \x1b[31m"]
FINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Settings:
    seconds: float = 600.0
    clients: int = 8
    in_flight: int = 3  # tasks each client keeps going at once
    demo_speed: float = 50.0
    chaos_mean_seconds: float = 20.0  # mean time between worker kills (exponentially distributed)
    poison_share: float = 0.01
    cancel_share: float = 0.05
    drain_seconds: float = 180.0  # after the clients stop submitting, how long the queue may take to empty
    seed: int = 1
    pause_share: float = 0.3  # of the chaos events, how many pause the worker instead of killing it
    pause_max_seconds: float = 12.0  # a pause lasts 1 s to this; beyond --hung-after-seconds the watchdog acts
    hung_after_seconds: float = 5.0
    disk_full_seconds: float = 15.0  # 0: the disk never fills
    disk_mb: float = 512.0


@dataclass
class Record:
    """One accepted task, as its client knows it."""

    task_id: str
    prompt: str
    seed: int
    size: tuple[int, int]
    image_format: str
    poison: bool
    cancel_sent: bool = False
    status: str = "waiting"
    error: str | None = None
    fetched: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class Books:
    """Everything the clients saw, shared between their threads (append-only lists and counters)."""

    records: list[Record] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count
    server_errors: list[str] = field(default_factory=list)
    health_503: int = 0
    transport_errors: list[str] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # 4xx on submit -> count (should stay 0)
    kills: int = 0
    pauses: int = 0
    disk_503: int = 0  # 503s that say the data directory cannot be written: their documented meaning
    disk_full_seconds: float = 0.0
    disk_note: str = ""  # why the disk did not fill, if it did not
    rss: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Result:
    settings: Settings
    seconds: float
    submitted: int
    done: int
    fetched_ok: int
    failed_poison: int
    failed_chaos: int
    failed_disk: int
    unexpected: list[str]  # failed for no injected fault, a poison task that did not fail, ...
    cancelled: int
    lost: list[str]
    bad_images: list[str]
    server_errors: list[str]
    health_503: int
    transport_errors: list[str]
    requests: int
    kills: int
    pauses: int
    worker_restarts: int
    disk_full_seconds: float
    disk_note: str
    disk_503: int
    rss_start_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    leftover_files: list[str]
    integrity: str
    exit_code: int

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_start_mb

    @property
    def ok(self) -> bool:
        return (
            not self.lost and not self.bad_images and not self.server_errors and not self.transport_errors
            and not self.unexpected and not self.leftover_files and self.integrity == "ok" and self.exit_code == 0
        )  # fmt: skip

    def rows(self) -> list[tuple[str, str]]:
        s = self.settings
        return [
            ("duration", f"{self.seconds / 60:.1f} min of load ({s.clients} clients × {s.in_flight} tasks in flight)"),
            ("tasks submitted (accepted)", str(self.submitted)),
            ("completed: image fetched, decoded, metadata matches", f"{self.fetched_ok} of {self.done} done"),
            ("failed by injected faults: poison prompts", str(self.failed_poison)),
            ("failed by injected faults: worker killed or hung twice while running", str(self.failed_chaos)),
            ("failed by injected faults: image not storable while the disk was full", str(self.failed_disk)),
            ("failed otherwise, or a poison task not failed", str(len(self.unexpected))),
            ("cancelled by clients", str(self.cancelled)),
            ("**lost**", f"**{len(self.lost)}**"),
            ("bad images", str(len(self.bad_images))),
            ("HTTP requests / **5xx**", f"{self.requests} / **{len(self.server_errors)}**"),
            ("503 from /api/health while the worker restarted", str(self.health_503)),
            ("connection errors", str(len(self.transport_errors))),
            ("worker SIGKILLs / SIGSTOP pauses by the chaos thread / worker restarts",
             f"{self.kills} / {self.pauses} / {self.worker_restarts}"),
            ("data disk full for", f"{self.disk_full_seconds:.0f} s{self.disk_note}"),
            ("503s saying the data directory cannot be written (their documented meaning)", str(self.disk_503)),
            ("API process RSS: after warm-up → end (peak)",
             f"{self.rss_start_mb:.1f} → {self.rss_end_mb:.1f} MB ({self.rss_growth_mb:+.1f} MB; peak "
             f"{self.rss_peak_mb:.1f} MB)"),
            ("files left in the image directory after fetching everything", str(len(self.leftover_files))),
            ("SQLite `PRAGMA integrity_check` after a graceful stop", self.integrity),
            ("server exit code after SIGTERM", str(self.exit_code)),
        ]  # fmt: skip

    def table(self) -> str:
        lines = ["| | |", "|---|---|"] + [f"| {what} | {value} |" for what, value in self.rows()]
        return "\n".join(lines)


# -- the clients -----------------------------------------------------------------------------------------


def observe(books: Books, method: str, path: str, response: requests.Response) -> None:
    with books.lock:
        books.statuses[response.status_code] += 1
        if response.status_code < 500:
            return
        if response.status_code == 503 and "data directory cannot be written" in response.text:
            books.disk_503 += 1  # its documented meaning: the disk is full; the client tries again later
        elif path == "/api/health" and response.status_code == 503:
            books.health_503 += 1  # its documented meaning: the worker is down (being restarted, or hung)
        else:
            books.server_errors.append(f"{method} {path} -> {response.status_code}: {response.text[:200]}")


class Client(threading.Thread):
    def __init__(self, index: int, url: str, books: Books, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name=f"soak-client-{index}", daemon=True)
        self.index = index
        self.url = url
        self.books = books
        self.settings = settings
        self.stop_submitting = stop
        self.random = random.Random(settings.seed * 1000 + index)
        self.session = requests.Session()
        self.mine: list[Record] = []
        self.counter = 0
        self.finished = threading.Event()

    def request(self, method: str, path: str, **kwargs) -> requests.Response | None:
        try:
            response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        except requests.RequestException as error:
            with self.books.lock:
                self.books.transport_errors.append(f"{method} {path}: {type(error).__name__}: {error}")
            return None
        observe(self.books, method, path, response)
        return response

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.settings.seconds + self.settings.drain_seconds
            while time.monotonic() < deadline:
                open_tasks = [r for r in self.mine if r.status not in FINAL or (r.status == "done" and not r.fetched)]
                if self.stop_submitting.is_set() and not open_tasks:
                    return
                if not self.stop_submitting.is_set() and len(open_tasks) < self.settings.in_flight:
                    self.submit()
                    continue
                for record in open_tasks:
                    self.follow(record)
                time.sleep(0.05 + self.random.random() * 0.1)  # a client's polling interval, not a wait
        finally:
            self.finished.set()

    def submit(self) -> None:
        self.counter += 1
        poison = self.random.random() < self.settings.poison_share
        width, height = self.random.choice(SIZES)
        prompt = f"soak client {self.index} task {self.counter}{self.random.choice(PROMPT_SPICE)}"
        prompt += f" {POISON}" if poison else ""
        seed = self.random.randrange(2**32)
        body = {"prompt": prompt, "seed": seed, "width": width, "height": height,
                "steps": self.random.randint(1, 4), "format": self.random.choice(FORMATS),
                "priority": self.random.random() < 0.1}  # fmt: skip
        response = self.request("POST", "/api/generate", json=body)
        if response is None:
            return
        if response.status_code != 200:
            with self.books.lock:
                self.books.refused[response.status_code] += 1
            time.sleep(0.5)  # a client's back-off after a refusal (a 503 while the disk is full), not a wait
            return
        record = Record(response.json()["task_id"], prompt, seed, (width, height), body["format"], poison)
        self.mine.append(record)
        with self.books.lock:
            self.books.records.append(record)

    def follow(self, record: Record) -> None:
        if record.status not in FINAL:
            response = self.request("GET", "/api/status", params={"task_id": record.task_id})
            if response is None or response.status_code not in (200, 410):  # 410: failed or cancelled
                if response is not None:
                    record.problems.append(f"status answered {response.status_code}: {response.text[:200]}")
                return
            status = response.json()
            record.status, record.error = status["status"], status["error"]
            open_task = record.status in ("waiting", "running") and not record.cancel_sent
            if open_task and self.random.random() < self.settings.cancel_share / 10:  # several polls per task
                record.cancel_sent = True
                self.request("GET", "/api/cancel", params={"task_id": record.task_id})
        if record.status == "done" and not record.fetched:
            self.fetch(record)

    def fetch(self, record: Record) -> None:
        response = self.request("GET", "/api/image", params={"task_id": record.task_id})
        if response is None or response.status_code == 503:  # 503: the disk is full; fetch it later
            return
        record.fetched = True
        if response.status_code != 200:
            record.problems.append(f"image answered {response.status_code}: {response.text[:200]}")
            return
        try:
            image = Image.open(io.BytesIO(response.content))
            image.load()  # decodes every pixel: a truncated file fails here
            metadata = read_metadata(response.content)
        except Exception as error:
            record.problems.append(f"image does not decode: {type(error).__name__}: {error}")
            return
        expected_size = tuple(side // 16 * 16 for side in record.size)
        if image.format != record.image_format or image.size != expected_size:
            expected = f"{record.image_format} {expected_size}"
            record.problems.append(f"image is {image.format} {image.size}, expected {expected}")
        if metadata.get("prompt") != record.prompt or metadata.get("seed") != str(record.seed):
            record.problems.append(f"image of another task: {metadata.get('prompt')!r} seed {metadata.get('seed')}")


# -- chaos and memory --------------------------------------------------------------------------------------


def chaos(url: str, books: Books, settings: Settings, stop: threading.Event) -> None:
    """SIGKILL the worker at random moments, as the OOM killer would, or pause it as a GPU hang would; only while
    the engine is loaded."""
    rng = random.Random(settings.seed)
    session = requests.Session()
    while not stop.wait(rng.expovariate(1.0 / settings.chaos_mean_seconds)):
        pid = _loaded_worker(url, session, books, stop)
        if pid is None:
            break
        try:
            if rng.random() < settings.pause_share:
                os.kill(pid, signal.SIGSTOP)
                with books.lock:
                    books.pauses += 1
                stop.wait(rng.uniform(1.0, settings.pause_max_seconds))  # the pause's length, not a sync
                os.kill(pid, signal.SIGCONT)  # ProcessLookupError if the watchdog killed it meanwhile
            else:
                os.kill(pid, signal.SIGKILL)
                with books.lock:
                    books.kills += 1
        except ProcessLookupError:
            continue


def _loaded_worker(url: str, session: requests.Session, books: Books, stop: threading.Event) -> int | None:
    """The worker's pid once its engine is loaded (a worker killed while loading twice halts the supervisor, by
    design), polled until `stop`. A strike that falls while the worker restarts waits for it rather than being
    skipped: skipped strikes left short runs with hardly a fault in them."""
    while not stop.is_set():
        try:
            response = session.get(url + "/api/health", timeout=30)
        except requests.RequestException as error:
            with books.lock:
                books.transport_errors.append(f"GET /api/health: {type(error).__name__}: {error}")
        else:
            observe(books, "GET", "/api/health", response)
            health = response.json()
            if health.get("model_loaded") and health.get("worker_alive") and health.get("worker_pid"):
                return health["worker_pid"]
        stop.wait(0.2)
    return None


def disk_filler(server: RunningServer, books: Books, settings: Settings, stop: threading.Event) -> None:
    """Half-way through, fill the server's data disk to the last byte, keep it full a while, then free it."""
    if stop.wait(settings.seconds / 2):
        return
    began = time.monotonic()
    fill_here(server.data_dir)
    stop.wait(settings.disk_full_seconds)  # how long the disk stays full, not a sync
    free_here(server.data_dir)
    with books.lock:
        books.disk_full_seconds = time.monotonic() - began


def sample_memory(pid: int, books: Books, stop: threading.Event, every: float = 2.0) -> None:
    began = time.monotonic()
    while not stop.wait(every):
        rss = rss_bytes(pid)
        if rss is not None:
            with books.lock:
                books.rss.append((time.monotonic() - began, rss))


def rss_figures(samples: list[tuple[float, int]], seconds: float) -> tuple[float, float, float]:
    """Median RSS over the first tenth after a warm-up (the first 10%), over the last tenth, and the peak (MB)."""
    if not samples:
        return 0.0, 0.0, 0.0
    mb = [(t, r / 2**20) for t, r in samples]
    window = max(seconds * 0.1, 4.0)
    start = [r for t, r in mb if window <= t < 2 * window] or [mb[0][1]]
    end = [r for t, r in mb if t >= mb[-1][0] - window] or [mb[-1][1]]
    return statistics.median(start), statistics.median(end), max(r for _, r in mb)


# -- the run -----------------------------------------------------------------------------------------------


def run(settings: Settings, data_dir: Path | None = None, log=print) -> Result:
    with tempfile.TemporaryDirectory(prefix="mflux-soak-") as temporary, contextlib.ExitStack() as mounted:
        directory = (data_dir or Path(temporary)) / "data"
        disk_note = ""
        if settings.disk_full_seconds:
            if (why_not := mounts_allowed()) is None:
                mounted.enter_context(tmpfs_mounted(directory, settings.disk_mb))
            else:
                disk_note = f" (skipped: {why_not})"
        options = ("--no-previews", "--hung-after-seconds", str(settings.hung_after_seconds))
        server = RunningServer(directory, options, demo_speed=settings.demo_speed)
        server.start(timeout=120)
        try:
            return _soak(server, settings, log, disk_note)
        finally:
            server.kill()  # only reached after a failure: _soak stops it gracefully


def _soak(server: RunningServer, settings: Settings, log, disk_note: str) -> Result:
    books = Books()
    stop_submitting, stop_chaos = threading.Event(), threading.Event()
    clients = [Client(i, server.url, books, settings, stop_submitting) for i in range(settings.clients)]
    chaos_thread = threading.Thread(target=chaos, args=(server.url, books, settings, stop_chaos), daemon=True)
    memory_thread = threading.Thread(target=sample_memory, args=(server.process.pid, books, stop_chaos), daemon=True)
    threads = [*clients, chaos_thread, memory_thread]
    books.disk_note = disk_note
    if settings.disk_full_seconds and not books.disk_note:
        threads.append(threading.Thread(target=disk_filler, args=(server, books, settings, stop_chaos), daemon=True))
    began = time.monotonic()
    for thread in threads:
        thread.start()
    next_report = began + 60
    while time.monotonic() - began < settings.seconds:
        time.sleep(min(1.0, max(settings.seconds - (time.monotonic() - began), 0.01)))  # the run's clock, not a sync
        if time.monotonic() >= next_report:
            next_report += 60
            with books.lock:
                log(f"  {(time.monotonic() - began) / 60:.0f} min: {len(books.records)} submitted, "
                    f"{books.kills} kills, {len(books.server_errors)} 5xx")  # fmt: skip
    stop_submitting.set()
    stop_chaos.set()  # the queue drains without further kills
    seconds = time.monotonic() - began
    drain_deadline = time.monotonic() + settings.drain_seconds
    for client in clients:  # each ends once its tasks have ended and their images are fetched
        client.finished.wait(max(drain_deadline - time.monotonic(), 1.0))
    for thread in threads[len(clients) :]:
        thread.join(30)
    health = requests.get(server.url + "/api/health", timeout=30).json()

    # Books, by what each client last saw (a task it never saw end is lost).
    records = list(books.records)
    done = [r for r in records if r.status == "done"]
    fetched_ok = [r for r in done if r.fetched and not r.problems]
    failed = [r for r in records if r.status == "failed"]
    failed_poison = [r for r in failed if r.poison and r.error and "killed by SIGKILL" in r.error]
    failed_chaos = [
        r for r in failed if not r.poison and r.error and re.search(r"(killed by SIGKILL|hung).*2 times", r.error)
    ]
    failed_disk = [r for r in failed if r.error and "could not store the image" in r.error and "No space" in r.error]
    unexpected = [
        f"{r.task_id} ({'poison' if r.poison else 'normal'}) failed: {r.error}"
        for r in failed
        if r not in failed_poison and r not in failed_chaos and r not in failed_disk
    ]
    unexpected += [f"{r.task_id}: a poison task ended {r.status}" for r in records if r.poison and r.status == "done"]
    cancelled = [r for r in records if r.status == "cancelled" and r.cancel_sent]
    accounted = {r.task_id for r in [*fetched_ok, *failed, *cancelled]}
    lost = [f"{r.task_id}: {r.status}{' fetched' if r.fetched else ''} {r.problems}"
            for r in records if r.task_id not in accounted and not (r.status == "done" and r.problems)]  # fmt: skip
    bad_images = [f"{r.task_id}: {r.problems}" for r in done if r.problems]

    leftovers = sorted(p.name for p in (server.data_dir / "images").iterdir())
    exit_code = server.stop(timeout=60)
    with sqlite3.connect(server.data_dir / "tasks.sqlite3") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    start_mb, end_mb, peak_mb = rss_figures(books.rss, seconds)
    return Result(
        settings=settings, seconds=seconds, submitted=len(records), done=len(done), fetched_ok=len(fetched_ok),
        failed_poison=len(failed_poison), failed_chaos=len(failed_chaos), failed_disk=len(failed_disk),
        unexpected=unexpected, cancelled=len(cancelled), lost=lost, bad_images=bad_images,
        server_errors=books.server_errors,
        health_503=books.health_503, transport_errors=books.transport_errors, requests=sum(books.statuses.values()),
        kills=books.kills, pauses=books.pauses, worker_restarts=health["worker_restarts"],
        disk_full_seconds=books.disk_full_seconds, disk_note=books.disk_note, disk_503=books.disk_503,
        rss_start_mb=start_mb, rss_end_mb=end_mb, rss_peak_mb=peak_mb, leftover_files=leftovers,
        integrity=integrity, exit_code=exit_code,
    )  # fmt: skip


# -- reporting ---------------------------------------------------------------------------------------------


def section(result: Result, command: str, started: datetime) -> str:
    s = result.settings
    verdict = "**passed**" if result.ok else "**FAILED**"
    cancelled = result.cancelled / max(result.submitted, 1)
    return f"""{START_MARK}
## Soak

`{command}`, {started:%Y-%m-%d %H:%M %Z}, on {this_machine().describe()}. {verdict}

{s.clients} client threads each keep {s.in_flight} tasks going: submit (random size up to 1024², 1-4 steps,
JPEG/PNG/WEBP, 10% priority, prompts with emoji, RTL and control characters), poll `/api/status`, cancel
some ({cancelled:.0%} here), fetch every finished image and check that it decodes and carries its own
prompt and seed. Meanwhile a chaos thread SIGKILLs the worker process every {s.chaos_mean_seconds:.0f} s on
average (exponential intervals; only while the engine is loaded) — or, {s.pause_share:.0%} of the time, pauses
it with SIGSTOP for 1 to {s.pause_max_seconds:g} s (`--hung-after-seconds {s.hung_after_seconds:g}`: the longer
pauses are caught by the watchdog, which kills and restarts the worker); half-way through, the data directory
(a {s.disk_mb:g} MB tmpfs) is filled to the last byte for {s.disk_full_seconds:g} s and then freed;
and {s.poison_share:.0%} of the prompts carry
`{POISON}`, which kills the worker each time they run. Demo engine at speed {s.demo_speed:g}. After
{result.seconds / 60:.0f} minutes the clients stop submitting, the queue drains, the server is stopped with
SIGTERM and its store checked. "Lost" counts accepted tasks that did not end done-and-fetched, failed with a
reason, or cancelled: it must be 0, as must 5xx.

{result.table()}
{END_MARK}"""


def recorded_section(path: Path = BENCHMARKS) -> str | None:
    """The soak section BENCHMARKS.md holds now, markers included (None if it has none)."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    match = _SECTION.search(current)
    return match.group(0) if match else None


def record(text: str, path: Path = BENCHMARKS) -> None:
    """Put the soak section into BENCHMARKS.md, replacing the previous one, leaving every other section alone."""
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if _SECTION.search(current):
        updated = _SECTION.sub(lambda _: text, current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(updated, encoding="utf-8")


def print_result(result: Result) -> None:
    width = max(len(what) for what, _ in result.rows())
    for what, value in result.rows():
        print(f"  {what.replace('**', ''):<{width}}  {value.replace('**', '')}")
    for title, items in (("lost", result.lost), ("bad images", result.bad_images), ("5xx", result.server_errors),
                         ("connection errors", result.transport_errors), ("unexpected", result.unexpected),
                         ("files left", result.leftover_files)):  # fmt: skip
        for item in items[:20]:
            print(f"  {title}: {item}")
    print("  verdict:", "passed" if result.ok else "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=Settings.clients)
    parser.add_argument("--in-flight", type=int, default=Settings.in_flight)
    parser.add_argument("--demo-speed", type=float, default=Settings.demo_speed)
    parser.add_argument("--chaos-mean", type=float, default=Settings.chaos_mean_seconds, help="seconds between kills")
    parser.add_argument("--poison", type=float, default=Settings.poison_share, help="share of poison prompts")
    parser.add_argument("--pause-share", type=float, default=Settings.pause_share,
                        help="share of chaos events that pause the worker (SIGSTOP) instead of killing it")  # fmt: skip
    parser.add_argument("--disk-full-seconds", type=float, default=Settings.disk_full_seconds,
                        help="how long the data disk stays full half-way through (0: never)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--no-record", dest="record", action="store_false", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    settings = Settings(
        seconds=args.minutes * 60, clients=args.clients, in_flight=args.in_flight, demo_speed=args.demo_speed,
        chaos_mean_seconds=args.chaos_mean, poison_share=args.poison, seed=args.seed, pause_share=args.pause_share,
        disk_full_seconds=args.disk_full_seconds,
    )  # fmt: skip
    started = datetime.now().astimezone()
    print(f"soak: {args.minutes:g} min, {settings.clients} clients, chaos every ~{settings.chaos_mean_seconds:g} s",
          file=sys.stderr, flush=True)  # fmt: skip
    result = run(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    print_result(result)
    if args.record:
        command = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
        record(section(result, command.strip(), started))
        print(f"recorded in {BENCHMARKS}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
