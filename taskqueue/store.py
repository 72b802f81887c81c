"""The task store: every task and its state, in one SQLite database.

SQLite in WAL mode gives crash-safe transactions, readers that never wait for the writer, and one file that
survives restarts. Each thread gets its own connection; writes that read-then-modify run in `BEGIN IMMEDIATE`
so two threads cannot claim the same task.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.tasks import GenerationParams, ImageFormat, OutputSpec, Task, TaskStatus
from taskqueue.forecast import Observation, Workload

SCHEMA_VERSION = 1

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
CREATE INDEX IF NOT EXISTS tasks_queue_order ON tasks (priority DESC, seq) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, seq);
CREATE INDEX IF NOT EXISTS tasks_by_client ON tasks (client) WHERE status = 'waiting';
-- Covers what the work ahead of a waiting task is summed from, so those sums never read whole rows.
CREATE INDEX IF NOT EXISTS tasks_queue_work ON tasks (priority, seq, width, height, steps) WHERE status = 'waiting';
-- The waiting tasks' workload per priority class, kept by the triggers below in the same transactions as the
-- tasks themselves: how many wait, and what a new task queues behind, without summing 10,000 rows.
CREATE TABLE IF NOT EXISTS waiting_totals (
    priority           INTEGER PRIMARY KEY,
    tasks              REAL NOT NULL DEFAULT 0,
    megapixels         REAL NOT NULL DEFAULT 0,
    steps              REAL NOT NULL DEFAULT 0,
    step_megapixels    REAL NOT NULL DEFAULT 0,
    step_megapixels_sq REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS observations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    engine      TEXT NOT NULL,
    megapixels  REAL NOT NULL,
    steps       INTEGER NOT NULL,
    seconds     REAL NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS observations_by_engine ON observations (engine, id);
"""

# The features of the cost model, summed in SQL over any set of tasks (see forecast.Workload).
_WORKLOAD_SUMS = """
    COUNT(*),
    COALESCE(SUM(width * height / 1048576.0), 0),
    COALESCE(SUM(steps), 0),
    COALESCE(SUM(steps * width * height / 1048576.0), 0),
    COALESCE(SUM(steps * (width * height / 1048576.0) * (width * height / 1048576.0)), 0)
"""

# Queue order: priority tasks first, then first come, first served. Listings show running tasks first, then
# the queue, then finished ones; each group is read in index order, so a page deep in a long queue is cheap.
_LISTED_GROUPS = (("running",), ("waiting",), ("done", "failed", "cancelled"))
_PRIORITIES = (0, 1)
_TOTALS = "tasks, megapixels, steps, step_megapixels, step_megapixels_sq"


def _totals_trigger(name: str, event: str, when: str, row: str, sign: str) -> str:
    """A trigger adding (sign "+") or removing ("-") one task's workload to its class in waiting_totals."""
    mp = f"({row}.width * {row}.height / 1048576.0)"
    return f"""
CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON tasks WHEN {when} BEGIN
    UPDATE waiting_totals SET tasks = tasks {sign} 1, megapixels = megapixels {sign} {mp},
        steps = steps {sign} {row}.steps, step_megapixels = step_megapixels {sign} {row}.steps * {mp},
        step_megapixels_sq = step_megapixels_sq {sign} {row}.steps * {mp} * {mp}
    WHERE priority = {row}.priority;
END;"""


_ENTERED = "NEW.status = 'waiting' AND OLD.status != 'waiting'"
_LEFT = "OLD.status = 'waiting' AND NEW.status != 'waiting'"
_TOTALS_TRIGGERS = "".join([
    _totals_trigger("waiting_inserted", "INSERT", "NEW.status = 'waiting'", "NEW", "+"),
    _totals_trigger("waiting_entered", "UPDATE OF status", _ENTERED, "NEW", "+"),
    _totals_trigger("waiting_left", "UPDATE OF status", _LEFT, "OLD", "-"),
    _totals_trigger("waiting_deleted", "DELETE", "OLD.status = 'waiting'", "OLD", "-"),
])  # fmt: skip


@dataclass(frozen=True)
class NewTask:
    params: GenerationParams
    output: OutputSpec
    priority: bool
    engine: str
    client: str = ""


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


class OverCapacity(Exception):
    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{scope}: {limit}")
        self.scope = scope  # "queue" or "client"
        self.limit = limit


def _check_capacity(db: sqlite3.Connection, capacity: Capacity, news: Sequence[NewTask]) -> None:
    if round(_totals(db, "1").tasks) + len(news) > capacity.waiting:
        raise OverCapacity("queue", capacity.waiting)
    clients: dict[str, int] = {}
    for new in news:
        if new.client:
            clients[new.client] = clients.get(new.client, 0) + 1
    for client, adding in clients.items():
        sql = "SELECT COUNT(*) FROM tasks WHERE status = 'waiting' AND client = ?"
        if db.execute(sql, (client,)).fetchone()[0] + adding > capacity.waiting_per_client:
            raise OverCapacity("client", capacity.waiting_per_client)


class TaskStore:
    def __init__(self, path: Path, clock=time.time) -> None:
        self.path = path
        self._clock = clock
        self._local = threading.local()
        # Writers queue here rather than in SQLite: a writer that finds the database locked sleeps in SQLite's
        # busy handler (1, 2, 5, 10 ms and more), which made concurrent submissions take tens of ms. Only this
        # process writes (the worker sends messages), so a thread lock orders every write.
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connection()
        db.executescript(_SCHEMA + _TOTALS_TRIGGERS)  # executescript manages its own transaction
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._recount_waiting()

    def _recount_waiting(self) -> None:
        """Rebuild waiting_totals from the tasks: for databases from before it existed, and against drift."""
        with self._write() as db:
            db.execute("DELETE FROM waiting_totals")
            for priority in _PRIORITIES:
                db.execute(
                    f"INSERT INTO waiting_totals (priority, {_TOTALS}) "
                    f"SELECT ?, {_WORKLOAD_SUMS} FROM tasks WHERE status = 'waiting' AND priority = ?",
                    (priority, priority),
                )

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
            db.execute("COMMIT")

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
        while True:
            task_id = secrets.token_hex(8)
            try:
                db.execute(
                    """INSERT INTO tasks (id, status, priority, prompt, negative_prompt, seed, width, height,
                           steps, guidance, format, quality, engine, client, submitted_at)
                       VALUES (?, 'waiting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (task_id, int(new.priority), p.prompt, p.negative_prompt, p.seed, p.width, p.height,
                     p.steps, p.guidance, new.output.format.value, new.output.quality, new.engine,
                     new.client, self._clock()),
                )  # fmt: skip
                return task_id
            except sqlite3.IntegrityError:  # 64 random bits collided: draw again
                continue

    def get(self, task_id: str) -> Task | None:
        row = self._read().execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _task(row) if row else None

    def running(self) -> list[Task]:
        rows = self._read().execute("SELECT * FROM tasks WHERE status = 'running' ORDER BY seq").fetchall()
        return [_task(r) for r in rows]

    def ahead_of(self, task: Task) -> Workload:
        """The waiting tasks that will run before `task`, summed as a workload.

        Higher priority classes come whole from waiting_totals. Within the task's own class only the shorter
        side is summed from the index: the tasks ahead of it, or those behind it subtracted from the class's
        total; so a new task, always last, costs nothing however long the queue is.
        """
        with self._snapshot() as db:
            return self._ahead_of(db, int(task.priority), task.seq)

    @staticmethod
    def _ahead_of(db: sqlite3.Connection, priority: int, seq: int) -> Workload:
        above = _totals(db, "priority > ?", priority)
        # Two subqueries: SQLite finds a MIN or a MAX alone from the index, but scans for both at once.
        class_seq = "FROM tasks WHERE status = 'waiting' AND priority = :priority"
        first, last = db.execute(
            f"SELECT (SELECT MIN(seq) {class_seq}), (SELECT MAX(seq) {class_seq})", {"priority": priority}
        ).fetchone()
        in_class = f"SELECT {_WORKLOAD_SUMS} FROM tasks WHERE status = 'waiting' AND priority = ? AND seq"
        if first is None or seq - first <= last - seq:
            return above + Workload(*db.execute(f"{in_class} < ?", (priority, seq)).fetchone())
        behind = Workload(*db.execute(f"{in_class} >= ?", (priority, seq)).fetchone())
        return above + _clamped(_totals(db, "priority = ?", priority) - behind)

    def waiting_workload(self, priority: bool) -> Workload:
        """What a new task with this priority would queue behind: every waiting task it cannot overtake."""
        return _totals(self._read(), "priority >= ?", int(priority))

    def count_waiting(self, client: str | None = None) -> int:
        if client is None:
            return round(_totals(self._read(), "1").tasks)
        sql, args = "SELECT COUNT(*) FROM tasks WHERE status = 'waiting' AND client = ?", (client,)
        return self._read().execute(sql, args).fetchone()[0]

    def count_by_status(self) -> dict[str, int]:
        rows = self._read().execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall()
        return {status.value: 0 for status in TaskStatus} | {r[0]: r[1] for r in rows}

    def listed(self, statuses: Sequence[TaskStatus], limit: int, offset: int) -> tuple[list[Task], int]:
        """Tasks in the given states, running first, then in queue order, then finished ones; and their total.

        Done tasks are only listed while their image is still waiting to be fetched. Each group is counted,
        and read only if the page reaches it, in the order of an index (the queue's for waiting tasks).
        """
        wanted = {TaskStatus(s).value for s in statuses}
        with self._snapshot() as db:
            return self._listed(db, wanted, limit, offset)

    @staticmethod
    def _listed(db: sqlite3.Connection, wanted: set[str], limit: int, offset: int) -> tuple[list[Task], int]:
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
            if "done" in chosen:
                where += " AND NOT (status = 'done' AND fetched_at IS NOT NULL)"
            if chosen == ["waiting"]:
                count = round(_totals(db, "1").tasks)
            else:
                count = db.execute(f"SELECT COUNT(*) FROM tasks WHERE {where}").fetchone()[0]
            if offset < count and len(tasks) < limit:
                # The queue's own index, named: left to itself SQLite may sort all waiting tasks for one page.
                index = "INDEXED BY tasks_queue_order" if chosen == ["waiting"] else ""
                rows = db.execute(
                    f"SELECT * FROM tasks {index} WHERE {where} ORDER BY priority DESC, seq LIMIT ? OFFSET ?",
                    (limit - len(tasks), offset),
                ).fetchall()
                tasks += [_task(r) for r in rows]
            offset = max(offset - count, 0)
            total += count
        return tasks, total

    # -- state changes -----------------------------------------------------------------------------------

    def claim_next(self) -> Task | None:
        """Move the first waiting task to running and hand it out (None when the queue is empty)."""
        with self._write() as db:
            # INDEXED BY: without it SQLite may sort every waiting task to find the first (ms at 10,000).
            row = db.execute(
                "SELECT seq FROM tasks INDEXED BY tasks_queue_order WHERE status = 'waiting' "
                "ORDER BY priority DESC, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = NULL, "
                "rendered_at = NULL WHERE seq = ?",
                (row[0],),
            )
            return _task(db.execute("SELECT * FROM tasks WHERE seq = ?", (row[0],)).fetchone())

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

    def cancel(self, task_id: str) -> Task | None:
        """Cancel a waiting or running task; returns the task as it was before (None if unknown)."""
        with self._write() as db:
            row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            if row["status"] in ("waiting", "running"):
                db.execute(
                    "UPDATE tasks SET status = 'cancelled', ended_at = ? WHERE id = ?",
                    (self._clock(), task_id),
                )
            return _task(row)

    def cancel_all(self) -> list[Task]:
        """Cancel every waiting and running task; returns them as they were."""
        with self._write() as db:
            rows = db.execute("SELECT * FROM tasks WHERE status IN ('waiting', 'running')").fetchall()
            db.execute(
                "UPDATE tasks SET status = 'cancelled', ended_at = ? WHERE status IN ('waiting', 'running')",
                (self._clock(),),
            )
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
                "rendered_at = NULL WHERE id = ? AND status = 'running'",
                (task_id,),
            )
            return cursor.rowcount == 1

    def recover_interrupted(self, max_attempts: int, reason: str) -> Recovery:
        """After a crash, tasks left running go back to the queue, unless they have used up their attempts."""
        requeued, failed = [], []
        with self._write() as db:
            for row in db.execute("SELECT id, attempts FROM tasks WHERE status = 'running'").fetchall():
                if row["attempts"] >= max_attempts:
                    db.execute(
                        "UPDATE tasks SET status = 'failed', ended_at = ?, error = ? WHERE id = ?",
                        (self._clock(), reason, row["id"]),
                    )
                    failed.append(row["id"])
                else:
                    db.execute(
                        "UPDATE tasks SET status = 'waiting', started_at = NULL, rendered_at = NULL WHERE id = ?",
                        (row["id"],),
                    )
                    requeued.append(row["id"])
        return Recovery(tuple(requeued), tuple(failed))

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

    def unfetched_images(self) -> list[Task]:
        """Done tasks whose image is still on disk, oldest first."""
        rows = (
            self._read()
            .execute("SELECT * FROM tasks WHERE status = 'done' AND fetched_at IS NULL ORDER BY ended_at, seq")
            .fetchall()
        )
        return [_task(r) for r in rows]

    # -- forecast history --------------------------------------------------------------------------------

    def add_observation(self, engine: str, observation: Observation) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO observations (engine, megapixels, steps, seconds, recorded_at) VALUES (?, ?, ?, ?, ?)",
                (engine, observation.megapixels, observation.steps, observation.seconds, self._clock()),
            )
            # Keep a bounded history: the forecaster only learns from the newest ones.
            db.execute(
                "DELETE FROM observations WHERE engine = ? AND id <= "
                "(SELECT id FROM observations WHERE engine = ? ORDER BY id DESC LIMIT 1 OFFSET 1000)",
                (engine, engine),
            )

    def observations(self, engine: str, limit: int) -> list[Observation]:
        rows = (
            self._read()
            .execute(
                "SELECT megapixels, steps, seconds FROM observations WHERE engine = ? ORDER BY id DESC LIMIT ?",
                (engine, limit),
            )
            .fetchall()
        )
        return [Observation(r[0], r[1], r[2]) for r in reversed(rows)]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _totals(db: sqlite3.Connection, where: str, *args: object) -> Workload:
    """The waiting tasks' workload summed over the priority classes matching `where`."""
    sums = ", ".join(f"COALESCE(SUM({column}), 0)" for column in _TOTALS.split(", "))
    return _clamped(Workload(*db.execute(f"SELECT {sums} FROM waiting_totals WHERE {where}", args).fetchone()))


def _clamped(work: Workload) -> Workload:
    """Running totals of floats can drift a hair below zero once a class empties; a workload cannot."""
    return Workload(*(max(value, 0.0) for value in work.vector()))


def _task(row: sqlite3.Row) -> Task:
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
        ),
        output=OutputSpec(format=ImageFormat(row["format"]), quality=row["quality"]),
        engine=row["engine"],
        client=row["client"],
        submitted_at=row["submitted_at"],
        started_at=row["started_at"],
        rendered_at=row["rendered_at"],
        ended_at=row["ended_at"],
        attempts=row["attempts"],
        error=row["error"],
        image_bytes=row["image_bytes"],
        fetched_at=row["fetched_at"],
    )
