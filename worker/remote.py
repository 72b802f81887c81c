"""mflux-server-worker: a worker on another machine (a second Mac), fed by the server's scheduler through Redis.

It is the same worker as the server's own — the same supervisor, worker process, engines and status table — with
a bridge to Redis where the server has its pipe: messages both ways (worker/broker.py describes the layout),
heartbeats, the running task's progress and previews, input images in and finished images out. It needs no
inbound port: everything is a connection it makes to Redis, so a worker behind NAT works.

    mflux-server-worker --broker redis://:PASSWORD@server.local:6379/0 --name studio --model dev -q 8
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from core import __version__
from core.progress import LiveProgress
from worker import broker, wire
from worker.engines.base import engine_catalog
from worker.loop import WorkerSettings
from worker.options import add_engine_options, engine_config, engine_missing
from worker.protocol import (
    Announce,
    Cancel,
    Failed,
    Finished,
    FromWorker,
    Holding,
    Loaded,
    LoadFailed,
    Log,
    Preload,
    Ready,
    Submit,
    WorkerExited,
)
from worker.status_table import StatusTable
from worker.supervisor import Supervisor

log = logging.getLogger("worker.remote")

OUTBOX_SIZE = 10_000  # messages kept while Redis is unreachable (log lines are the first to go)
# Refreshes the owner key if it is still ours; takes it back after Redis lost it (a restart without persistence);
# answers 0 if another session holds the name (a second worker of the same name, or the server's "lost" verdict).
HEARTBEAT = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not value then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""


class NameTaken(RuntimeError):
    pass


class Bridge:
    """The scheduler as a worker on another machine sees it. Implements the supervisor's `WorkerEvents`."""

    def __init__(self, url: str, name: str, table: StatusTable, spool: Path, preview_path: Path | None,
                 models: frozenset[str], engine: str) -> None:  # fmt: skip
        self.name, self.url = name, url
        self.session = uuid.uuid4().hex
        self.redis = broker.connect(url)
        self._heartbeat = self.redis.register_script(HEARTBEAT)
        self._table = table
        self._spool = spool
        self._preview_path = preview_path
        self._models, self._engine = models, engine
        self._supervisor: Supervisor | None = None
        self._outbox: collections.deque[tuple[str, bytes]] = collections.deque()
        self._outbox_ready = threading.Condition()
        self._stop = threading.Event()
        self._warm: list[str] = []  # what the worker process holds loaded, to announce to a restarted server
        self._ready: Ready | None = None
        self._published_live: str | None = None
        self._published_previews = -1

    # -- what the local supervisor reports ----------------------------------------------------------------

    def on_message(self, message: FromWorker) -> None:
        match message:
            case Ready():
                self._ready = message
                self._warm = []
            case Loaded():
                self._warm = [v for v in self._warm if v not in message.evicted and v != message.variant]
                self._warm.append(message.variant)
            case LoadFailed():
                self._warm = [v for v in self._warm if v != message.variant]
            case Finished():
                message = self._upload_image(message)
            case Log() if message.level < logging.INFO:
                return  # debug lines stay on this machine
        self._publish(message)

    def on_worker_exit(self, exitcode: int | None, was_ready: bool, reason: str | None = None) -> None:
        self._warm, self._ready = [], None
        self._publish(WorkerExited(exitcode, was_ready))

    def _upload_image(self, message: Finished) -> Finished:
        path = self._spool / "images" / message.task_id
        try:
            data = path.read_bytes()
        except OSError as error:
            log.error("the image of task %s is gone: %s", message.task_id, error)
            return message
        if len(data) > broker.MAX_IMAGE_BYTES:
            log.error("the image of task %s is %d bytes: too large to send", message.task_id, len(data))
            return message
        self._retrying(lambda: self.redis.set(broker.image(message.task_id, self.session), data,
                                              ex=broker.IMAGE_TTL_SECONDS))  # fmt: skip
        path.unlink(missing_ok=True)
        return message

    def _publish(self, message: FromWorker) -> None:
        entry = (wire.encode(message), message)
        with self._outbox_ready:
            if len(self._outbox) >= OUTBOX_SIZE:  # Redis has been away a long while: drop log lines first
                kept = [item for item in self._outbox if not isinstance(item[1], Log)]
                self._outbox = collections.deque(kept[-(OUTBOX_SIZE - 1) :])
            self._outbox.append(entry)
            self._outbox_ready.notify()

    # -- registering, and the threads that keep it up ------------------------------------------------------

    def register(self) -> None:
        """Take the name for this session, or raise NameTaken if a live worker holds it."""
        owner = broker.owner(self.name)
        ttl = int(broker.LOST_AFTER_SECONDS * 1000)
        # A worker of this name that was just killed still holds the name until its heartbeat lapses: wait that
        # long before calling it a second worker of the same name.
        deadline = time.monotonic() + broker.LOST_AFTER_SECONDS + broker.HEARTBEAT_SECONDS
        while not self.redis.set(owner, self.session, nx=True, px=ttl):
            holder = (self.redis.get(owner) or b"").decode()
            if holder.startswith("lost:"):
                self.redis.set(owner, self.session, px=ttl)  # the server let go of that session: a new one
                break
            if time.monotonic() > deadline:
                info = self.redis.hgetall(broker.info(self.name))
                host = info.get(b"host", b"?").decode()
                raise NameTaken(f"a worker named {self.name!r} is already running (on {host}); give this one "
                                "another --name")  # fmt: skip
            time.sleep(broker.HEARTBEAT_SECONDS / 4)  # (a deadline-bound wait for the other's heartbeat to lapse)
        self.redis.hset(broker.info(self.name), mapping={
            "host": socket.gethostname(), "session": self.session, "version": __version__,
            "protocol": str(broker.PROTOCOL), "engine": self._engine, "models": json.dumps(sorted(self._models)),
            "pid": str(os.getpid()), "since": str(time.time()),
        })  # fmt: skip
        self.redis.sadd(broker.WORKERS, self.name)
        log.info("registered as worker %s (session %s)", self.name, self.session[:8])

    def run(self, supervisor: Supervisor) -> None:
        """Serve until stopped: the supervisor's worker process does the work, threads keep Redis informed."""
        self._supervisor = supervisor
        for target in (self._send_forever, self._beat_forever):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        supervisor.start()
        self._receive_forever()

    def stop(self) -> None:
        self._stop.set()
        with self._outbox_ready:
            self._outbox_ready.notify_all()

    def _receive_forever(self) -> None:
        inbox = broker.inbox(self.name)
        while not self._stop.is_set():
            try:
                item = self.redis.blpop([inbox], timeout=1)
            except Exception as error:  # Redis away: wait for it, the work goes on meanwhile
                self._redis_trouble("reading the inbox", error)
                continue
            if item is None:
                continue
            try:
                message = wire.decode(item[1])
            except wire.WireError as error:
                log.error("ignored a message this worker does not understand: %s", error)
                continue
            self._handle(message)

    def _handle(self, message: object) -> None:
        supervisor = self._supervisor
        match message:
            case Submit():
                try:
                    submit = self._localized(message)
                except Exception as error:
                    self._publish(Failed(message.task_id, time.time(), "input", f"its input images: {error}"))
                    return
                supervisor.send(submit)
            case Preload() | Cancel():
                supervisor.send(message)
            case Announce():
                self._announce()

    def _localized(self, message: Submit) -> Submit:
        """The task with paths on this machine: its input images fetched, its image written to the spool."""
        folder = self._spool / "inputs" / message.task_id
        names = message.params.input_names
        if names:
            files = self.redis.hgetall(broker.inputs(message.task_id))
            missing = [name for name in names if name.encode() not in files]
            if missing:
                raise FileNotFoundError(f"not in Redis (expired?): {', '.join(missing)}")
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                (folder / name).write_bytes(files[name.encode()])
        (self._spool / "images").mkdir(parents=True, exist_ok=True)
        image = self._spool / "images" / message.task_id
        return dataclasses.replace(message, image_path=str(image), inputs_dir=str(folder))

    def _announce(self) -> None:
        """A server that (re)started asks who is there: say Ready again, with what is loaded and what is held."""
        if self._ready is None:
            return
        self._publish(self._ready)
        for variant in self._warm:
            self._publish(Loaded(variant, 0.0))
        live = self._table.snapshot()
        if live is not None and live.rendered_at is None:
            self._publish(Holding(live.task_id))

    def _send_forever(self) -> None:
        while not self._stop.is_set():
            with self._outbox_ready:
                while not self._outbox and not self._stop.is_set():
                    self._outbox_ready.wait(1.0)
                if self._stop.is_set():
                    return
                text, message = self._outbox[0]
            fields = {"worker": self.name, "session": self.session, "protocol": broker.PROTOCOL, "message": text}
            try:
                self.redis.xadd(broker.EVENTS, fields, maxlen=broker.EVENTS_MAXLEN, approximate=True)
            except Exception as error:
                self._redis_trouble("sending a message", error)
                continue
            with self._outbox_ready:
                if self._outbox and self._outbox[0][0] is text:
                    self._outbox.popleft()
            if isinstance(message, Finished):  # the spool's inputs are no longer needed
                shutil.rmtree(self._spool / "inputs" / message.task_id, ignore_errors=True)

    def _beat_forever(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_beat >= broker.HEARTBEAT_SECONDS:
                    self._beat()
                    last_beat = time.monotonic()
                self._publish_live()
            except NameTaken as error:
                log.error("%s; stopping", error)
                self._supervisor.stop()
                self.stop()
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except Exception as error:
                self._redis_trouble("the heartbeat", error)
            self._stop.wait(broker.LIVE_SECONDS)

    def _beat(self) -> None:
        ttl = int(broker.LOST_AFTER_SECONDS * 1000)
        if self._heartbeat(keys=[broker.owner(self.name)], args=[self.session, ttl]) == 0:
            holder = (self.redis.get(broker.owner(self.name)) or b"").decode()
            if holder != f"lost:{self.session}":
                raise NameTaken(f"another worker took the name {self.name!r}")
            # The server declared this worker lost (a pause, a network cut) and ran its task elsewhere: drop
            # what it holds, and come back as a new session.
            log.warning("the server declared this worker lost; joining again as a new session")
            live = self._table.snapshot()
            if live is not None:
                self._table.request_cancel(live.task_id)
            with self._outbox_ready:
                self._outbox.clear()  # the old session's messages would be ignored anyway
            self.session = uuid.uuid4().hex
            self.register()
            self._announce()

    def _publish_live(self) -> None:
        live = self._table.snapshot()
        now = time.time()
        text = json.dumps(_ages(live, now)) if live is not None else "{}"
        if text != self._published_live:
            self.redis.set(broker.live(self.name), text, ex=broker.PREVIEW_TTL_SECONDS)
            self._published_live = text
        if live is not None and live.preview_count != self._published_previews and self._preview_path:
            try:
                data = self._preview_path.read_bytes()
            except OSError:
                return
            self.redis.set(broker.preview(self.name), json.dumps({"task_id": live.task_id,
                           "jpeg": base64.b64encode(data).decode()}), ex=broker.PREVIEW_TTL_SECONDS)  # fmt: skip
            self._published_previews = live.preview_count

    def _retrying(self, action) -> object:
        while not self._stop.is_set():
            try:
                return action()
            except Exception as error:
                self._redis_trouble("storing an image", error)
        return None

    def _redis_trouble(self, doing: str, error: Exception) -> None:
        log.warning("Redis at %s: %s failed (%s); retrying", broker.safe_url(self.url), doing, error)
        self._stop.wait(1.0)


def _ages(live: LiveProgress, now: float) -> dict:
    """The progress with times as ages: the server's clock is not this machine's."""

    def age(at: float | None) -> float | None:
        return None if at is None else max(now - at, 0.0)

    return {"task_id": live.task_id, "steps": live.steps, "steps_done": live.steps_done,
            "preview_count": live.preview_count, "started": age(live.started_at),
            "loop_started": age(live.loop_started_at), "last_step": age(live.last_step_at),
            "rendered": age(live.rendered_at)}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mflux-server-worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add = parser.add_argument
    add("--broker", default=os.environ.get("MFLUX_SERVER_BROKER"), help="redis://[user:password@]host:port/db "
        "(rediss:// for TLS), as the server's --broker (or env MFLUX_SERVER_BROKER)")  # fmt: skip
    add("--name", default=socket.gethostname().split(".")[0], help="this worker's name, unique among the "
        "server's workers (default: the host name)")  # fmt: skip
    add_engine_options(parser)
    add("--no-previews", dest="previews", action="store_false", help="do not render previews of running tasks")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="how much to log")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s %(message)s")
    if not args.broker:
        print("mflux-server-worker: --broker redis://… is required (the server's --broker)", file=sys.stderr)
        return 2
    if not broker.valid_name(args.name):
        print(f"mflux-server-worker: --name {args.name!r}: letters, digits, . - _ only (1 to 64)", file=sys.stderr)
        return 2
    config = engine_config(args)
    if missing := engine_missing(config):
        print(missing, file=sys.stderr)
        return 2
    catalog = engine_catalog(config)
    spool = Path(tempfile.mkdtemp(prefix=f"mflux-worker-{args.name}-"))
    preview = spool / "preview.jpg" if args.previews else None
    table = StatusTable(Supervisor.context())
    bridge = Bridge(args.broker, args.name, table, spool, preview, frozenset(catalog.offered), config.engine)
    try:
        bridge.register()
    except NameTaken as error:
        log.error("%s", error)
        return 3
    except Exception as error:
        log.error("cannot reach Redis at %s: %s", broker.safe_url(args.broker), error)
        return 2
    settings = WorkerSettings(engine=config, preview_path=str(preview) if preview else None,
                              log_level=logging.getLogger().getEffectiveLevel())  # fmt: skip
    supervisor = Supervisor(settings, table, bridge)
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            bridge.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        bridge.run(supervisor)
    finally:
        supervisor.stop()
        shutil.rmtree(spool, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
