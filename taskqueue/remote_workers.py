"""Workers on other machines, through Redis (`--broker`): the server's side of worker/broker.py's layout.

Each remote worker becomes one more worker of the scheduler (attached with a `RemoteLink` and a `RemoteLive`),
exactly like the local one; this module only moves messages and data between Redis and the scheduler:

- One thread reads the event stream (a consumer group: what arrives while the server is down waits for it),
  checks each message's session (a worker declared lost that comes back speaks for an old session, and is not
  listened to), fetches a finished image from Redis into the image directory before the scheduler hears
  `Finished`, and takes times from this server's clock (the workers' clocks are their own).
- Another watches: every `LIVE_SECONDS` it reads busy workers' progress and previews (status polls then read
  memory, never Redis); every second it checks heartbeats. A worker whose heartbeat lapsed (`LOST_AFTER_SECONDS`)
  is lost: its task runs again elsewhere, under the same rule as a crash, and it must come back as a new session.
  While Redis itself is unreachable, nobody is declared lost: the heartbeats could not be seen, and the workers
  carry on, keeping their messages until Redis is back (when they get another full heartbeat period).
- Messages to a worker that cannot be sent (Redis away) are kept and sent in order once it is back.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import __version__
from core.files import write_atomically
from core.progress import LiveProgress
from taskqueue.images import ImageFiles
from taskqueue.inputs import InputFiles
from taskqueue.scheduler import Scheduler
from taskqueue.store import TaskStore
from worker import broker, wire
from worker.protocol import Announce, Failed, Finished, Holding, Ready, Submit, ToWorker, WorkerExited

log = logging.getLogger("taskqueue.remote")

STAMPED = ("at",)  # message fields that are times: taken from this server's clock on arrival


@dataclass
class RemoteRecord:
    """What /api/workers shows of a worker on another machine, including one that is gone or was refused."""

    name: str
    session: str = ""
    host: str = ""
    version: str = ""
    engine: str = ""
    models: frozenset[str] | None = None
    state: str = "joining"  # joining, ready, lost, refused
    error: str | None = None
    last_heartbeat: float | None = None
    since: float = field(default_factory=time.time)


class RemoteLive:
    """A remote worker's progress and preview, as last read from Redis (times on this server's clock)."""

    def __init__(self) -> None:
        self.progress: LiveProgress | None = None
        self._preview: tuple[str, bytes] | None = None

    def snapshot(self) -> LiveProgress | None:
        return self.progress

    def preview(self, task_id: str) -> bytes | None:
        kept = self._preview
        return kept[1] if kept is not None and kept[0] == task_id else None

    def update(self, published: dict, now: float) -> None:
        if not published:
            self.progress = None
            return

        def at(age: float | None) -> float | None:
            return None if age is None else now - age

        self.progress = LiveProgress(
            task_id=published["task_id"], started_at=at(published["started"]) or now, steps=published["steps"],
            steps_done=published["steps_done"], loop_started_at=at(published.get("loop_started")),
            last_step_at=at(published.get("last_step")), rendered_at=at(published.get("rendered")),
            preview_count=published.get("preview_count", 0),
        )  # fmt: skip

    def keep_preview(self, task_id: str, jpeg: bytes) -> None:
        self._preview = (task_id, jpeg)


class RemoteLink:
    """Messages to one worker: its inbox list; input images go ahead of a Submit as a key with an expiry."""

    def __init__(self, workers: RemoteWorkers, name: str) -> None:
        self._workers = workers
        self.name = name

    def send(self, message: ToWorker) -> bool:
        self._workers.send(self.name, message)
        return True


class RemoteWorkers:
    def __init__(
        self, url: str, scheduler: Scheduler, store: TaskStore, images: ImageFiles, inputs: InputFiles
    ) -> None:
        self.url = url
        self._redis = broker.connect(url)
        self._scheduler = scheduler
        self._store = store
        self._images = images
        self._inputs = inputs
        self._records: dict[str, RemoteRecord] = {}
        self._lives: dict[str, RemoteLive] = {}
        self._pending: collections.deque[tuple[str, ToWorker]] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reachable_since: float | None = None  # Redis answering again since (for the lost-worker grace)
        self.consumer = f"server-{id(self):x}"
        self._threads = [
            threading.Thread(target=self._listen_forever, name="broker-listen", daemon=True),
            threading.Thread(target=self._watch_forever, name="broker-watch", daemon=True),
        ]

    # -- life cycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    @property
    def reachable(self) -> bool:
        return self._reachable_since is not None

    def records(self) -> list[RemoteRecord]:
        with self._lock:
            return [dataclasses.replace(record) for record in self._records.values()]

    # -- to workers --------------------------------------------------------------------------------------

    def send(self, name: str, message: ToWorker) -> None:
        with self._lock:
            self._pending.append((name, message))
        self._flush()

    def _flush(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                name, message = self._pending[0]
            try:
                if isinstance(message, Submit):
                    self._upload_inputs(message)
                self._redis.rpush(broker.inbox(name), wire.encode(message))
            except Exception as error:
                self._trouble("sending to a worker", error)
                return  # kept in order; the watcher flushes again once Redis answers
            with self._lock:
                if self._pending and self._pending[0][1] is message:
                    self._pending.popleft()

    def _upload_inputs(self, message: Submit) -> None:
        names = message.params.input_names
        if not names:
            return
        folder = Path(message.inputs_dir)
        files = {name: (folder / name).read_bytes() for name in names}
        key = broker.inputs(message.task_id)
        pipe = self._redis.pipeline()
        pipe.hset(key, mapping=files)
        pipe.expire(key, broker.INPUTS_TTL_SECONDS)
        pipe.execute()

    # -- from workers ------------------------------------------------------------------------------------

    def _listen_forever(self) -> None:
        group_ready = False
        while not self._stop.is_set():
            try:
                if not group_ready:
                    self._ensure_group()
                    self._resume()
                    group_ready = True
                    self._announce_call()
                    backlog = self._read("0")  # what this consumer was given and never acknowledged
                    if backlog:
                        self._handle_entries(backlog)
                        continue
                entries = self._read(">")
                self._reachable()
                self._handle_entries(entries)
            except Exception as error:
                group_ready = False
                self._trouble("reading the workers' messages", error)

    def _ensure_group(self) -> None:
        import redis

        try:
            self._redis.xgroup_create(broker.EVENTS, broker.GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _read(self, since: str) -> list:
        answer = self._redis.xreadgroup(broker.GROUP, self.consumer, {broker.EVENTS: since}, count=100, block=1000)
        return answer[0][1] if answer else []

    def _handle_entries(self, entries: list) -> None:
        for entry_id, fields in entries:
            try:
                self._handle({key.decode(): value.decode() for key, value in fields.items()})
            except Exception:
                log.exception("handling a worker's message failed")
            self._redis.xack(broker.EVENTS, broker.GROUP, entry_id)

    def _handle(self, fields: dict[str, str]) -> None:
        name, session = fields.get("worker", ""), fields.get("session", "")
        if fields.get("protocol") != str(broker.PROTOCOL):
            self._refuse(name, f"it speaks protocol {fields.get('protocol')}, this server {broker.PROTOCOL} "
                         f"(mflux-server {__version__}): run the same version on both")  # fmt: skip
            return
        message = wire.decode(fields["message"])
        if any(hasattr(message, stamp) for stamp in STAMPED):
            message = dataclasses.replace(message, at=time.time())
        with self._lock:
            record = self._records.get(name)
        if isinstance(message, Ready):
            self._joined(name, session, message)
            return
        if record is None or record.session != session or record.state not in ("ready", "joining"):
            log.debug("ignored %s from %s: not its current session", type(message).__name__, name)
            return
        match message:
            case Finished():
                message = self._fetch_image(message, session)
                if isinstance(message, Failed):
                    self._scheduler.on_message(message, name)
                    return
            case WorkerExited():
                self._scheduler.on_worker_exit(message.exitcode, message.was_ready, worker=name)
                return
            case Holding():
                self._scheduler.adopt(name, message.task_id)
                return
        self._scheduler.on_message(message, name)

    def _joined(self, name: str, session: str, message: Ready) -> None:
        info = {key.decode(): value.decode() for key, value in self._redis.hgetall(broker.info(name)).items()}
        if info.get("session") != session:
            return  # an earlier session's Ready, read late
        models = frozenset(json.loads(info.get("models", "[]"))) or None
        with self._lock:
            old = self._records.get(name)
            replaced = old is not None and old.session != session and old.state == "ready"
            record = RemoteRecord(name, session, info.get("host", ""), info.get("version", ""), message.engine,
                                  models, "ready", None, time.time())  # fmt: skip
            self._records[name] = record
            live = self._lives[name] = RemoteLive()
        if replaced:
            self._scheduler.detach(name, "it came back as a new session")
        log.info("worker %s joined from %s (mflux-server %s, %s engine)", name, record.host, record.version,
                 message.engine)  # fmt: skip
        self._scheduler.attach(RemoteLink(self, name), name, live, remote=True, host=record.host, models=models)
        self._scheduler.on_message(message, name)

    def _fetch_image(self, message: Finished, session: str) -> Finished | Failed:
        task = self._store.get(message.task_id)
        key = broker.image(message.task_id, session)
        data = self._redis.get(key)
        if task is None:
            self._redis.delete(key)
            return message
        if data is None:
            return Failed(message.task_id, time.time(), "encoding", "the image did not arrive through Redis")
        write_atomically(self._images.path(task.id, task.output.format), data)
        self._redis.delete(key)
        return dataclasses.replace(message, image_bytes=len(data))

    def _refuse(self, name: str, reason: str) -> None:
        with self._lock:
            known = self._records.get(name)
            if known is not None and known.state == "refused":
                return
            self._records[name] = RemoteRecord(name, state="refused", error=reason)
        log.error("worker %s refused: %s", name, reason)

    def _resume(self) -> None:
        """After a (re)start, or Redis back: the workers whose heartbeat is alive are known again, not ready until
        they say so (their messages written meanwhile are theirs); tasks left running on a worker whose heartbeat
        has lapsed run again elsewhere."""
        names = {raw.decode() for raw in self._redis.smembers(broker.WORKERS)}
        names |= {task.worker for task in self._store.running() if task.worker not in (None, "local")}
        for name in sorted(names):
            with self._lock:
                if name in self._records:
                    continue
            info = {key.decode(): value.decode() for key, value in self._redis.hgetall(broker.info(name)).items()}
            owner = self._redis.get(broker.owner(name))
            if owner is not None and owner.decode() == info.get("session"):
                models = frozenset(json.loads(info.get("models", "[]"))) or None
                record = RemoteRecord(name, info["session"], info.get("host", ""), info.get("version", ""),
                                      info.get("engine", ""), models, "joining", None, time.time())  # fmt: skip
                with self._lock:
                    self._records[name] = record
                    live = self._lives[name] = RemoteLive()
                self._scheduler.attach(RemoteLink(self, name), name, live, remote=True, host=record.host,
                                       models=models)  # fmt: skip
            elif self._store.running(name):
                self._scheduler.detach(name, "its heartbeat lapsed while this server was down")

    def _announce_call(self) -> None:
        """After a (re)start: every worker whose heartbeat is alive says who it is and what it holds."""
        for raw in self._redis.smembers(broker.WORKERS):
            name = raw.decode()
            if self._redis.exists(broker.owner(name)):
                self._redis.rpush(broker.inbox(name), wire.encode(Announce()))

    # -- watching ----------------------------------------------------------------------------------------

    def _watch_forever(self) -> None:
        last_check = 0.0
        while not self._stop.wait(broker.LIVE_SECONDS):
            try:
                self._flush()
                self._read_progress()
                if time.monotonic() - last_check >= broker.HEARTBEAT_SECONDS:
                    self._check_heartbeats()
                    last_check = time.monotonic()
                self._reachable()
            except Exception as error:
                self._trouble("watching the workers", error)

    def _read_progress(self) -> None:
        now = time.time()
        for name, live in list(self._lives.items()):
            state = self._scheduler.worker(name)
            if state is None or (not state.busy and live.progress is None):
                continue
            raw = self._redis.get(broker.live(name))
            published = json.loads(raw) if raw else {}
            previews = live.progress.preview_count if live.progress else 0
            live.update(published, now)
            if live.progress is not None and live.progress.preview_count > previews:
                preview = self._redis.get(broker.preview(name))
                if preview:
                    kept = json.loads(preview)
                    live.keep_preview(kept["task_id"], base64.b64decode(kept["jpeg"]))

    def _check_heartbeats(self) -> None:
        now = time.time()
        grace = self._reachable_since is None or now - self._reachable_since < broker.LOST_AFTER_SECONDS
        for record in self.records():
            if record.state != "ready":
                continue
            owner = self._redis.get(broker.owner(record.name))
            if owner is not None and owner.decode() == record.session:
                with self._lock:
                    if record.name in self._records:
                        self._records[record.name].last_heartbeat = now
                continue
            if grace:
                continue  # Redis was away: its heartbeats could not be seen
            self._lost(record, owner)

    def declare_lost(self, name: str, reason: str) -> None:
        """Let a worker go (the watchdog found it hung): its task runs elsewhere; it must rejoin as a new session."""
        with self._lock:
            record = self._records.get(name)
        if record is not None and record.state in ("ready", "joining"):
            self._lost(record, None, reason)

    def _lost(self, record: RemoteRecord, owner: bytes | None, reason: str | None = None) -> None:
        reason = reason or (f"no heartbeat for {broker.LOST_AFTER_SECONDS:g} s" if owner is None
                            else "another worker took its name")  # fmt: skip
        with self._lock:
            kept = self._records.get(record.name)
            if kept is None or kept.session != record.session:
                return
            kept.state, kept.error = "lost", reason
            self._lives.pop(record.name, None)
        if owner is None or owner.decode() == record.session:  # tell it, should it come back: this session is over
            try:
                self._redis.set(broker.owner(record.name), f"lost:{record.session}", ex=60)
            except Exception as error:
                self._trouble("marking a worker lost", error)
        self._scheduler.detach(record.name, reason)

    def _reachable(self) -> None:
        if self._reachable_since is None:
            self._reachable_since = time.time()
            log.info("Redis at %s answers", broker.safe_url(self.url))

    def _trouble(self, doing: str, error: Exception) -> None:
        if self._reachable_since is not None:
            log.warning("Redis at %s: %s failed (%s); the local worker carries on", broker.safe_url(self.url),
                        doing, error)  # fmt: skip
        self._reachable_since = None
        self._stop.wait(1.0)
