"""The task store: every task and its state, in one SQLite database.

SQLite in WAL mode gives crash-safe transactions, readers that never wait for the writer, and one file that
survives restarts. Each thread gets its own connection; writes that read-then-modify run in `BEGIN IMMEDIATE`
so two threads cannot claim the same task. Only this process writes (workers send messages), so a thread lock
orders every write.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.models import Lora, Variant
from core.tasks import Composite, GenerationParams, ImageFormat, OutputSpec, Task, TaskStatus, new_task_id
from taskqueue.forecast import Timing
from taskqueue.planner import Queued

SCHEMA_VERSION = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    prompt          TEXT NOT NULL,
    negative_prompt TEXT,
    seed            INTEGER NOT NULL,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    steps           INTEGER NOT NULL,
    guidance        REAL NOT NULL,
    format          TEXT NOT NULL,
    quality         INTEGER NOT NULL,
    engine          TEXT NOT NULL,
    client          TEXT NOT NULL DEFAULT '',
    submitted_at    REAL NOT NULL,
    started_at      REAL,
    rendered_at     REAL,
    ended_at        REAL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    image_bytes     INTEGER,
    fetched_at      REAL
);
CREATE TABLE IF NOT EXISTS timings (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,  -- 'image' or 'load'
    megapixels   REAL NOT NULL DEFAULT 0,
    steps        INTEGER NOT NULL DEFAULT 0,
    before_loop  REAL NOT NULL DEFAULT 0,
    loop         REAL NOT NULL DEFAULT 0,
    after_loop   REAL NOT NULL DEFAULT 0,
    cached       INTEGER,
    first        INTEGER NOT NULL DEFAULT 0,
    seconds      REAL NOT NULL DEFAULT 0,
    recorded_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS timings_by_key ON timings (kind, key, id);
"""

# Each entry brings a database from the version before it to its own; a new database runs them all.
_MIGRATIONS = {
    2: """
ALTER TABLE tasks ADD COLUMN model TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN variant TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN variant_spec TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN inputs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN prompt_key TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN steps_run INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN overtaken INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN overtaken_seconds REAL NOT NULL DEFAULT 0;
DROP TRIGGER IF EXISTS waiting_inserted;
DROP TRIGGER IF EXISTS waiting_entered;
DROP TRIGGER IF EXISTS waiting_left;
DROP TRIGGER IF EXISTS waiting_deleted;
DROP INDEX IF EXISTS tasks_queue_work;
DROP TABLE IF EXISTS waiting_totals;
DROP TABLE IF EXISTS observations;
ALTER TABLE tasks ADD COLUMN reference_pixels INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET steps_run = steps;
""",
    # Webhooks: a task's callback, and the outbox of calls to make. The trigger writes a task's call in the very
    # transaction that ends the task, whichever transition ends it (done, failed, cancelled, failed at recovery),
    # so an ended task can never lack its call, nor a call its ended task. The call keeps what it reports: the
    # task itself may be forgotten (retention) while the call is still being retried.
    3: """
ALTER TABLE tasks ADD COLUMN callback_url TEXT;
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id           TEXT PRIMARY KEY,  -- the delivery id: the same on every attempt, for receivers to deduplicate
    task_id      TEXT NOT NULL,
    url          TEXT NOT NULL,
    status       TEXT NOT NULL,
    error        TEXT,
    model        TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    steps        INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    started_at   REAL,
    ended_at     REAL NOT NULL,
    due_at       REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (due_at);
CREATE TRIGGER IF NOT EXISTS task_ended_webhook AFTER UPDATE OF status ON tasks
WHEN NEW.callback_url IS NOT NULL AND NEW.status IN ('done', 'failed', 'cancelled')
     AND OLD.status NOT IN ('done', 'failed', 'cancelled')
BEGIN
    INSERT INTO webhook_outbox (id, task_id, url, status, error, model, seed, width, height, steps, submitted_at,
                                started_at, ended_at, due_at)
    VALUES (lower(hex(randomblob(16))), NEW.id, NEW.callback_url, NEW.status, NEW.error, NEW.variant, NEW.seed,
            NEW.width, NEW.height, NEW.steps, NEW.submitted_at, NEW.started_at,
            COALESCE(NEW.ended_at, (julianday('now') - 2440587.5) * 86400.0),
            COALESCE(NEW.ended_at, (julianday('now') - 2440587.5) * 86400.0));
END;
""",
    # Several workers (issue 13): which one a running task is on, and what each learned of each model.
    4: """
ALTER TABLE tasks ADD COLUMN worker TEXT;
ALTER TABLE timings ADD COLUMN worker TEXT NOT NULL DEFAULT 'local';
ALTER TABLE tasks ADD COLUMN awaited INTEGER NOT NULL DEFAULT 0;
""",
    # Named API keys (issue 14): the key that queued each task, whose alone it is (tasks from before: no one's,
    # which only admins see).
    5: """
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT '';
""",
    # Joining tasks no longer ask which variants wait (the plan takes them in or is made again): one index less
    # to keep up on every change of state.
    6: """
DROP INDEX IF EXISTS tasks_waiting_variants;
""",
}

_INDEXES = """
CREATE INDEX IF NOT EXISTS tasks_queue_order ON tasks (priority DESC, seq) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, seq);
CREATE INDEX IF NOT EXISTS tasks_by_client ON tasks (client) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks (owner, status, seq);
"""

# Listings show running tasks first, then the queue, then finished ones; each group is read in index order, so a
# page deep in a long queue is cheap.
_FINISHED = ("done", "failed", "cancelled")
_LISTED_GROUPS = (("running",), ("waiting",), _FINISHED)
_QUEUE_COLUMNS = "id, seq, priority, variant, model, variant_spec, width, height, reference_pixels, steps_run, " \
                 "prompt_key, overtaken, overtaken_seconds, attempts"  # fmt: skip


@dataclass(frozen=True)
class NewTask:
    params: GenerationParams
    output: OutputSpec
    priority: bool
    engine: str
    variant: Variant
    client: str = ""
    callback_url: str | None = None  # checked already: see TaskService.submit_all
    task_id: str | None = None  # chosen beforehand when files are written for it first (its input images)
    awaited: bool = False  # its only consumer is a call waiting on its connection (a blocking OpenAI/A1111 call)
    owner: str = ""  # the name of the API key that queued it


@dataclass(frozen=True)
class Recovery:
    """What start-up found of a previous run that ended without a graceful shutdown."""

    requeued: tuple[str, ...]
    failed: tuple[str, ...]


@dataclass(frozen=True)
class Capacity:
    """How many tasks may wait: overall, and per client."""

    waiting: int
    waiting_per_client: int


@dataclass(frozen=True)
class WebhookCall:
    """A webhook call still to make: the task's outcome as it ended, where to send it, how it has gone so far."""

    id: str  # the delivery id, the same on every attempt
    task_id: str
    url: str
    status: TaskStatus
    error: str | None
    model: str  # the variant's key, as /api/status names it
    seed: int
    width: int
    height: int
    steps: int
    submitted_at: float
    started_at: float | None
    ended_at: float
    due_at: float  # when the next attempt may start
    attempts: int  # attempts made and failed
    last_error: str | None = None


class OverCapacity(Exception):
    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{scope}: {limit}")
        self.scope = scope  # "queue" or "client"
        self.limit = limit


def prompt_key(params: GenerationParams) -> str:
    """Equal for the prompts a model's prompt cache would find (prompt and negative prompt)."""
    text = f"{params.prompt}\x1f{params.negative_prompt or ''}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class TaskStore:
    def __init__(self, path: Path, clock=time.time) -> None:
        self.path = path
        self._clock = clock
        self._local = threading.local()
        # Writers queue here rather than in SQLite: a writer that finds the database locked sleeps in SQLite's
        # busy handler (1, 2, 5, 10 ms and more), which made concurrent submissions take tens of ms.
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate(self._connection())

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA)  # executescript manages its own transaction
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for target in sorted(_MIGRATIONS):
            if version < target:
                columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
                script = "\n".join(
                    line
                    for line in _MIGRATIONS[target].strip().splitlines()
                    if not (line.startswith("ALTER TABLE tasks ADD COLUMN") and line.split()[5] in columns)
                )
                db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {target};\nCOMMIT;")
        db.executescript(_INDEXES)

    # -- connections -------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a committed transaction survives a killed process; only power loss may
            # drop the newest ones. That is the right trade for a queue that must stay fast under load.
            db.execute("PRAGMA synchronous = NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.OperationalError:  # e.g. the disk is full: leave no transaction open behind us
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def check_writable(self) -> None:
        """Raise sqlite3.OperationalError unless a write can be committed now (after a full disk). Rewriting the
        schema version changes nothing but commits a page, as every real write must."""
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version = {int(version)}")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads that must see one state: a task moving from waiting to running between two of them
        would otherwise be in neither answer."""
        db = self._connection()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def _read(self) -> sqlite3.Connection:
        return self._connection()

    # -- adding and reading ------------------------------------------------------------------------------

    def add(self, new: NewTask) -> Task:
        return self.add_all([new])[0]

    def add_all(self, news: Sequence[NewTask], capacity: Capacity | None = None) -> list[Task]:
        """Queue tasks in one transaction: all of them, or (over `capacity`) none, raising `OverCapacity`.

        Checking the caps and inserting in the same write transaction is what makes the caps hold under
        simultaneous submissions: two checks can no longer both see room for one more.
        """
        with self._write() as db:
            if capacity is not None:
                _check_capacity(db, capacity, news)
            ids = [self._insert(db, new) for new in news]
            rows = [db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone() for task_id in ids]
        return [_task(row) for row in rows]

    def _insert(self, db: sqlite3.Connection, new: NewTask) -> str:
        p = new.params
        inputs = _inputs_json(p)
        while True:
            task_id = new.task_id or new_task_id()
            try:
                db.execute(
                    """INSERT INTO tasks (id, status, priority, prompt, negative_prompt, seed, width, height, steps,
                           guidance, format, quality, engine, client, submitted_at, model, variant, variant_spec,
                           inputs, prompt_key, steps_run, callback_url, reference_pixels, awaited, owner)
                       VALUES (?, 'waiting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (task_id, int(new.priority), p.prompt, p.negative_prompt, p.seed, p.width, p.height, p.steps,
                     p.guidance, new.output.format.value, new.output.quality, new.engine, new.client, self._clock(),
                     new.variant.model, new.variant.key, _variant_json(new.variant), inputs,
                     prompt_key(p), p.steps_run, new.callback_url, p.reference_pixels, int(new.awaited), new.owner),
                )  # fmt: skip
                return task_id
            except sqlite3.IntegrityError as error:
                # 64 random bits collided: draw again. Any other constraint (or a chosen id) is a bug to raise:
                # retrying it would hold the write lock forever.
                if new.task_id is not None or "tasks.id" not in str(error):
                    raise
                continue

    def get(self, task_id: str) -> Task | None:
        row = self._read().execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _task(row) if row else None

    def running(self, worker: str | None = None) -> list[Task]:
        """The running tasks (on `worker`, if given)."""
        if worker is None:
            rows = self._read().execute("SELECT * FROM tasks WHERE status = 'running' ORDER BY seq").fetchall()
        else:
            sql = "SELECT * FROM tasks WHERE status = 'running' AND worker = ? ORDER BY seq"
            rows = self._read().execute(sql, (worker,)).fetchall()
        return [_task(r) for r in rows]

    def count_waiting(self, client: str | None = None) -> int:
        if client is None:
            return self._read().execute("SELECT COUNT(*) FROM tasks WHERE status = 'waiting'").fetchone()[0]
        sql, args = "SELECT COUNT(*) FROM tasks WHERE status = 'waiting' AND client = ?", (client,)
        return self._read().execute(sql, args).fetchone()[0]

    def count_by_status(self) -> dict[str, int]:
        rows = self._read().execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall()
        return {status.value: 0 for status in TaskStatus} | {r[0]: r[1] for r in rows}

    def queue(self, after_seq: int | None = None, priority: bool = False) -> Iterator[Queued]:
        """The waiting tasks in queue order (priority first, then first come), as the planner sees them; read
        lazily, so a caller that stops early reads only what it used. With `after_seq`: only the normal (or
        `priority`) tasks submitted after that one (those that joined the end of their part of the queue since)."""
        db = self._read()
        if after_seq is not None:
            cursor = db.execute(
                f"SELECT {_QUEUE_COLUMNS} FROM tasks INDEXED BY tasks_queue_order "
                "WHERE status = 'waiting' AND priority = ? AND seq > ? ORDER BY priority DESC, seq",
                (int(priority), after_seq),
            )
        else:
            # The queue's own index, named: left to itself SQLite may sort every waiting task to find the first.
            cursor = db.execute(
                f"SELECT {_QUEUE_COLUMNS} FROM tasks INDEXED BY tasks_queue_order WHERE status = 'waiting' "
                "ORDER BY priority DESC, seq"
            )
        while rows := cursor.fetchmany(256):
            yield from (_queued(row) for row in rows)

    def listed(
        self,
        statuses: Sequence[TaskStatus],
        limit: int,
        offset: int,
        owner: str | None = None,
        client: str | None = None,
    ) -> tuple[list[Task], int]:
        """Tasks in the given states, running first, then in queue order, then finished ones; and their total.

        Done tasks are only listed while their image is still waiting to be fetched. Each group is counted,
        and read only if the page reaches it, in the order of an index (the queue's for waiting tasks).
        `owner`: as a user key sees them: everyone's running and waiting tasks (the queue it shares), and of the
        finished ones only that owner's. `client`: only that client's tasks.
        """
        wanted = {TaskStatus(s).value for s in statuses}
        with self._snapshot() as db:
            return self._listed(db, wanted, limit, offset, owner, client)

    @staticmethod
    def _listed(
        db: sqlite3.Connection, wanted: set[str], limit: int, offset: int, owner: str | None, client: str | None
    ) -> tuple[list[Task], int]:
        tasks: list[Task] = []
        total = 0
        for group in _LISTED_GROUPS:
            chosen = [status for status in group if status in wanted]
            if not chosen:
                continue
            # Literal statuses (enum values, never client text): only `status = 'waiting'` written out lets
            # SQLite use the partial index that holds the queue order.
            literal = ", ".join(f"'{status}'" for status in chosen)
            where = f"status = {literal}" if len(chosen) == 1 else f"status IN ({literal})"
            args: list[object] = []
            if "done" in chosen:
                where += " AND NOT (status = 'done' AND fetched_at IS NOT NULL)"
            if owner is not None and group is _FINISHED:
                where += " AND owner = ?"
                args.append(owner)
            if client is not None:
                where += " AND client = ?"
                args.append(client)
            count = db.execute(f"SELECT COUNT(*) FROM tasks WHERE {where}", args).fetchone()[0]
            if offset < count and len(tasks) < limit:
                index = "INDEXED BY tasks_queue_order" if chosen == ["waiting"] else ""
                rows = db.execute(
                    f"SELECT * FROM tasks {index} WHERE {where} ORDER BY priority DESC, seq LIMIT ? OFFSET ?",
                    (*args, limit - len(tasks), offset),
                ).fetchall()
                tasks += [_task(r) for r in rows]
            offset = max(offset - count, 0)
            total += count
        return tasks, total

    # -- state changes -----------------------------------------------------------------------------------

    def claim(
        self,
        task_id: str,
        overtaken: Sequence[str] = (),
        overtaken_seconds: float = 0.0,
        worker: str = "local",
        attempt: bool = True,
    ) -> Task | None:
        """Move a waiting task to running on `worker` and hand it out (None if it is no longer waiting); the tasks
        it goes ahead of each count one more overtaking and `overtaken_seconds` more of others' work.
        `attempt=False`: the worker is already at it (found again after a restart): no new attempt."""
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE tasks SET status = 'running', attempts = attempts + {int(attempt)}, started_at = NULL, "
                "rendered_at = NULL, worker = ? WHERE id = ? AND status = 'waiting'",
                (worker, task_id),
            )
            if cursor.rowcount != 1:
                return None
            for other in overtaken:
                db.execute(
                    "UPDATE tasks SET overtaken = overtaken + 1, overtaken_seconds = overtaken_seconds + ? "
                    "WHERE id = ? AND status = 'waiting'",
                    (overtaken_seconds, other),
                )
            return _task(db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone())

    def claim_next(self) -> Task | None:
        """Move the first waiting task to running (None when the queue is empty)."""
        first = next(self.queue(), None)
        return self.claim(first.id) if first is not None else None

    def mark_started(self, task_id: str, at: float) -> None:
        self._update_running(task_id, "started_at = ?", (at,))

    def mark_rendered(self, task_id: str, at: float) -> bool:
        return self._update_running(task_id, "rendered_at = ?", (at,))

    def mark_done(self, task_id: str, at: float, image_bytes: int) -> bool:
        """Record a finished image; False when the task was cancelled meanwhile and the image is unwanted."""
        return self._update_running(task_id, "status = 'done', ended_at = ?, image_bytes = ?", (at, image_bytes))

    def mark_failed(self, task_id: str, at: float, error: str) -> bool:
        return self._update_running(task_id, "status = 'failed', ended_at = ?, error = ?", (at, error))

    def _update_running(self, task_id: str, assignments: str, values: tuple) -> bool:
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE tasks SET {assignments} WHERE id = ? AND status = 'running'", (*values, task_id)
            )
            return cursor.rowcount == 1

    def fail_waiting(self, variant: str, error: str) -> list[str]:
        """Fail every waiting task that needs `variant` (it cannot be loaded); returns their ids."""
        with self._write() as db:
            rows = db.execute("SELECT id FROM tasks WHERE status = 'waiting' AND variant = ?", (variant,)).fetchall()
            db.execute(
                "UPDATE tasks SET status = 'failed', ended_at = ?, error = ? WHERE status = 'waiting' AND variant = ?",
                (self._clock(), error, variant),
            )
        return [row[0] for row in rows]

    def cancel(self, task_id: str, owner: str | None = None) -> Task | None:
        """Cancel a waiting or running task (of `owner`, if given); returns the task as it was before (None if
        unknown, or another owner's)."""
        with self._write() as db:
            if owner is None:
                row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            else:
                row = db.execute("SELECT * FROM tasks WHERE id = ? AND owner = ?", (task_id, owner)).fetchone()
            if row is None:
                return None
            if row["status"] in ("waiting", "running"):
                db.execute(
                    "UPDATE tasks SET status = 'cancelled', ended_at = ? WHERE id = ?",
                    (self._clock(), task_id),
                )
            return _task(row)

    def cancel_awaited(self) -> list[Task]:
        """End the tasks whose caller waited on a connection that is gone (the server stopped or crashed): no one
        would take their images. Returns them as they were."""
        with self._write() as db:
            rows = db.execute("SELECT * FROM tasks WHERE awaited = 1 AND status IN ('waiting', 'running')").fetchall()
            db.execute(
                "UPDATE tasks SET status = 'cancelled', ended_at = ?, error = ? "
                "WHERE awaited = 1 AND status IN ('waiting', 'running')",
                (self._clock(), "the call that waited for it ended when the server stopped"),
            )
        return [_task(row) for row in rows]

    def cancel_all(self, owner: str | None = None) -> list[Task]:
        """Cancel every waiting and running task (of `owner`, if given); returns them as they were."""
        where, args = "status IN ('waiting', 'running')", ()
        if owner is not None:
            where, args = where + " AND owner = ?", (owner,)
        with self._write() as db:
            rows = db.execute(f"SELECT * FROM tasks WHERE {where}", args).fetchall()
            db.execute(f"UPDATE tasks SET status = 'cancelled', ended_at = ? WHERE {where}", (self._clock(), *args))
        return [_task(r) for r in rows]

    def mark_fetched(self, task_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE tasks SET fetched_at = ? WHERE id = ? AND status = 'done' AND fetched_at IS NULL",
                (self._clock(), task_id),
            )
            return cursor.rowcount == 1

    def requeue(self, task_id: str, *, count_attempt: bool) -> bool:
        """Put a running task back in its place in the queue (it keeps its sequence number)."""
        attempts = "attempts" if count_attempt else "MAX(attempts - 1, 0)"
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE tasks SET status = 'waiting', attempts = {attempts}, started_at = NULL, "
                "rendered_at = NULL, worker = NULL WHERE id = ? AND status = 'running'",
                (task_id,),
            )
            return cursor.rowcount == 1

    def recover_interrupted(self, max_attempts: int, reason: str, keep_remote: bool = False) -> Recovery:
        """After a crash, tasks left running go back to the queue, unless they have used up their attempts.
        `keep_remote`: those on workers of other machines stay running there (taskqueue/remote_workers.py finds
        out, once Redis answers, whether their worker is still at them)."""
        requeued, failed = [], []
        with self._write() as db:
            for row in db.execute("SELECT id, attempts, worker FROM tasks WHERE status = 'running'").fetchall():
                if keep_remote and row["worker"] not in (None, "local"):
                    continue
                if row["attempts"] >= max_attempts:
                    db.execute(
                        "UPDATE tasks SET status = 'failed', ended_at = ?, error = ? WHERE id = ?",
                        (self._clock(), reason, row["id"]),
                    )
                    failed.append(row["id"])
                else:
                    db.execute(
                        "UPDATE tasks SET status = 'waiting', started_at = NULL, rendered_at = NULL, worker = NULL "
                        "WHERE id = ?",
                        (row["id"],),
                    )
                    requeued.append(row["id"])
        return Recovery(tuple(requeued), tuple(failed))

    def adopt_unassigned(self, variant: Variant) -> int:
        """Tasks from before models were chosen per task ran the one model the server had: give them `variant`."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE tasks SET model = ?, variant = ?, variant_spec = ? WHERE model = ''",
                (variant.model, variant.key, _variant_json(variant)),
            )
            return cursor.rowcount

    def expire(self, finished_before: float) -> list[Task]:
        """Forget finished tasks that ended before the given time; returns them (their images must go too)."""
        with self._write() as db:
            rows = db.execute(
                "SELECT * FROM tasks WHERE status IN ('done', 'failed', 'cancelled') AND ended_at < ?",
                (finished_before,),
            ).fetchall()
            db.execute(
                "DELETE FROM tasks WHERE status IN ('done', 'failed', 'cancelled') AND ended_at < ?",
                (finished_before,),
            )
        return [_task(r) for r in rows]

    def drop_image(self, task_id: str, reason: str) -> bool:
        """Give up a done task's unfetched image (its file must go too); the reason is what a client is told."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE tasks SET fetched_at = ?, error = ? WHERE id = ? AND status = 'done' AND fetched_at IS NULL",
                (self._clock(), reason, task_id),
            )
            return cursor.rowcount == 1

    def stored_images(self) -> tuple[int, int]:
        """How many unfetched images there are, and their bytes."""
        row = (
            self._read()
            .execute(
                "SELECT COUNT(*), COALESCE(SUM(image_bytes), 0) FROM tasks WHERE status = 'done' AND fetched_at IS NULL"
            )
            .fetchone()
        )
        return row[0], row[1]

    def with_inputs(self) -> list[Task]:
        """Every task that has input images (their folders must stay)."""
        rows = self._read().execute("SELECT * FROM tasks WHERE inputs != '{}'").fetchall()
        return [_task(r) for r in rows]

    def unfetched_images(self) -> list[Task]:
        """Done tasks whose image is still on disk, oldest first."""
        rows = (
            self._read()
            .execute("SELECT * FROM tasks WHERE status = 'done' AND fetched_at IS NULL ORDER BY ended_at, seq")
            .fetchall()
        )
        return [_task(r) for r in rows]

    # -- what the forecaster learned ---------------------------------------------------------------------

    def add_timing(self, timing: Timing) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO timings (key, kind, megapixels, steps, before_loop, loop, after_loop, cached, first, "
                "recorded_at, worker) VALUES (?, 'image', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (timing.key, timing.megapixels, timing.steps, timing.before_loop, timing.loop, timing.after_loop,
                 None if timing.prompt_cached is None else int(timing.prompt_cached), int(timing.first_after_load),
                 self._clock(), timing.worker),
            )  # fmt: skip
            self._trim(db, "image", timing.key, timing.worker)

    def add_load(self, key: str, seconds: float, worker: str = "local") -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO timings (key, kind, seconds, recorded_at, worker) VALUES (?, 'load', ?, ?, ?)",
                (key, seconds, self._clock(), worker),
            )
            self._trim(db, "load", key, worker)

    @staticmethod
    def _trim(db: sqlite3.Connection, kind: str, key: str, worker: str) -> None:
        # Keep a bounded history: the forecaster only learns from the newest ones.
        db.execute(
            "DELETE FROM timings WHERE kind = ? AND key = ? AND worker = ? AND id <= (SELECT id FROM timings "
            "WHERE kind = ? AND key = ? AND worker = ? ORDER BY id DESC LIMIT 1 OFFSET 500)",
            (kind, key, worker, kind, key, worker),
        )

    def timings(self, limit: int) -> list[Timing]:
        """The newest image timings of every model on every worker, oldest first."""
        rows = (
            self._read()
            .execute(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY key, worker ORDER BY id DESC) AS age "
                "FROM timings WHERE kind = 'image') WHERE age <= ? ORDER BY id",
                (limit,),
            )
            .fetchall()
        )
        return [
            Timing(r["key"], r["megapixels"], r["steps"], r["before_loop"], r["loop"], r["after_loop"],
                   None if r["cached"] is None else bool(r["cached"]), bool(r["first"]), r["worker"])
            for r in rows
        ]  # fmt: skip

    def loads(self) -> dict[tuple[str, str], float]:
        """Each model's load time on each worker ((worker, key) → seconds), smoothed over its loads, oldest first."""
        found: dict[tuple[str, str], float] = {}
        sql = "SELECT worker, key, seconds FROM timings WHERE kind = 'load' ORDER BY id"
        for worker, key, seconds in self._read().execute(sql):
            old = found.get((worker, key))
            found[(worker, key)] = seconds if old is None else old + 0.5 * (seconds - old)
        return found

    # -- the webhook outbox (its rows are written by the trigger task_ended_webhook) -----------------------

    def webhook_calls(self, limit: int) -> list[WebhookCall]:
        """The pending webhook calls, the soonest due first (due or not: the caller waits for the first)."""
        rows = self._read().execute("SELECT * FROM webhook_outbox ORDER BY due_at, id LIMIT ?", (limit,)).fetchall()
        return [_webhook_call(row) for row in rows]

    def count_webhook_calls(self) -> int:
        return self._read().execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()[0]

    def webhook_retry(self, call_id: str, due_at: float, error: str) -> None:
        """One more attempt failed; the next may start at `due_at`."""
        with self._write() as db:
            db.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, due_at = ?, last_error = ? WHERE id = ?",
                (due_at, error, call_id),
            )

    def webhook_done(self, call_id: str) -> None:
        """Delivered, or given up: either way the call is not made again."""
        with self._write() as db:
            db.execute("DELETE FROM webhook_outbox WHERE id = ?", (call_id,))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _check_capacity(db: sqlite3.Connection, capacity: Capacity, news: Sequence[NewTask]) -> None:
    # One pass over the queue's clients gives both counts (each submission asks, so it is kept to one).
    sql = "SELECT client, COUNT(*) FROM tasks INDEXED BY tasks_by_client WHERE status = 'waiting' GROUP BY client"
    waiting = dict(db.execute(sql).fetchall())
    if sum(waiting.values()) + len(news) > capacity.waiting:
        raise OverCapacity("queue", capacity.waiting)
    for client, adding in Counter(new.client for new in news if new.client).items():
        if waiting.get(client, 0) + adding > capacity.waiting_per_client:
            raise OverCapacity("client", capacity.waiting_per_client)


def _variant_json(variant: Variant) -> str:
    return json.dumps({
        "model": variant.model,
        "quantize": variant.quantize,
        "path": variant.path,
        "loras": [{"name": lora.name, "path": lora.path, "scale": lora.scale} for lora in variant.loras],
    })  # fmt: skip


@functools.lru_cache(maxsize=256)  # a queue holds few variants; a plan reads each of its 10,000 rows
def _variant(text: str, model: str) -> Variant:
    spec = json.loads(text or "{}")
    loras = tuple(Lora(item["name"], item["path"], item["scale"]) for item in spec.get("loras", ()))
    return Variant(spec.get("model") or model, spec.get("quantize"), loras, spec.get("path"))


def _queued(row: sqlite3.Row) -> Queued:
    variant = _variant(row["variant_spec"], row["model"])
    return Queued(
        id=row["id"],
        seq=row["seq"],
        priority=bool(row["priority"]),
        variant=row["variant"],
        cost_key=variant.cost_key,
        megapixels=(row["width"] * row["height"] + row["reference_pixels"]) / 1048576,  # what a step works on
        steps=row["steps_run"],
        prompt_key=row["prompt_key"],
        overtaken=row["overtaken"],
        overtaken_seconds=row["overtaken_seconds"],
        attempts=row["attempts"],
        model=variant.model,
    )


def _webhook_call(row: sqlite3.Row) -> WebhookCall:
    return WebhookCall(**(dict(row) | {"status": TaskStatus(row["status"])}))


def _inputs_json(p: GenerationParams) -> str:
    """The input files a task's parameters name (in its folder of inputs, taskqueue/inputs.py), as stored."""
    if not p.input_names:
        return "{}"
    composite = p.composite.as_json() if p.composite else None
    return json.dumps({"init_image": p.init_image, "image_strength": p.image_strength,
                       "references": list(p.references), "mask": p.mask, "composite": composite})  # fmt: skip


def _task(row: sqlite3.Row) -> Task:
    return _task_of(tuple(row.keys()), tuple(row))


@functools.lru_cache(maxsize=1024)
def _task_of(columns: tuple[str, ...], values: tuple) -> Task:
    """A task from its row's values. Tasks are immutable, and the pages of the queue that clients keep reading
    hold the same rows: the same values give the same Task, built once."""
    row = dict(zip(columns, values, strict=True))
    inputs = json.loads(row["inputs"] or "{}")
    return Task(
        id=row["id"],
        seq=row["seq"],
        status=TaskStatus(row["status"]),
        priority=bool(row["priority"]),
        params=GenerationParams(
            prompt=row["prompt"],
            seed=row["seed"],
            width=row["width"],
            height=row["height"],
            steps=row["steps"],
            guidance=row["guidance"],
            negative_prompt=row["negative_prompt"],
            init_image=inputs.get("init_image"),
            image_strength=inputs.get("image_strength"),
            references=tuple(inputs.get("references") or ()),
            mask=inputs.get("mask"),
            reference_pixels=row["reference_pixels"],
            composite=Composite.from_json(inputs.get("composite")),
        ),
        output=OutputSpec(format=ImageFormat(row["format"]), quality=row["quality"]),
        engine=row["engine"],
        client=row["client"],
        submitted_at=row["submitted_at"],
        variant=_variant(row["variant_spec"], row["model"]),
        started_at=row["started_at"],
        rendered_at=row["rendered_at"],
        ended_at=row["ended_at"],
        attempts=row["attempts"],
        error=row["error"],
        image_bytes=row["image_bytes"],
        fetched_at=row["fetched_at"],
        worker=row["worker"],
        owner=row["owner"],
    )
