"""taskqueue/store.py, in process: each transition's conditions and what it records, the caps, the delete-once
image, retention's boundaries and the forecast history. (The queue's order against a model of it, under
random sequences of operations: tests/test_queue_model.py.)"""

from __future__ import annotations

import secrets
import sqlite3
import threading

import pytest

from core.models import Variant
from core.tasks import GenerationParams, ImageFormat, OutputSpec, TaskStatus
from taskqueue.forecast import Timing
from taskqueue.store import Capacity, NewTask, OverCapacity, TaskStore


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    store = TaskStore(tmp_path / "tasks.sqlite3", clock=clock)
    yield store
    store.close()


def new(prompt="p", width=256, height=256, steps=2, priority=False, client="", **kwargs) -> NewTask:
    params = GenerationParams(prompt, kwargs.pop("seed", 1), width, height, steps, kwargs.pop("guidance", 3.5),
                              kwargs.pop("negative_prompt", None))  # fmt: skip
    output = OutputSpec(kwargs.pop("format", ImageFormat.PNG), kwargs.pop("quality", 85))
    variant = Variant(kwargs.pop("model", "demo"))
    return NewTask(params, output, priority, kwargs.pop("engine", "demo"), variant, client)


def running(store: TaskStore, **kwargs):
    """A new task, claimed at once (the queue must have no other task waiting)."""
    task = store.add(new(**kwargs))
    assert store.claim_next().id == task.id
    return store.get(task.id)


def done(store: TaskStore, at: float = 2000.0, image_bytes: int = 100, **kwargs):
    task = running(store, **kwargs)
    assert store.mark_done(task.id, at, image_bytes)
    return store.get(task.id)


# -- adding and reading ------------------------------------------------------------------------------------


def test_a_task_is_stored_with_everything_it_was_given(store, clock):
    clock.now = 1234.5
    task = store.add(new("a fox", 640, 384, 7, True, "10.0.0.9", seed=99, guidance=4.5, negative_prompt="blurry",
                         format=ImageFormat.WEBP, quality=70, engine="mflux"))  # fmt: skip
    assert len(task.id) == 16 and int(task.id, 16) >= 0
    assert task == store.get(task.id)
    assert task.status is TaskStatus.WAITING and task.priority is True and task.seq >= 1
    assert task.params == GenerationParams("a fox", 99, 640, 384, 7, 4.5, "blurry")
    assert task.output == OutputSpec(ImageFormat.WEBP, 70)
    assert (task.engine, task.client, task.submitted_at) == ("mflux", "10.0.0.9", 1234.5)
    assert (task.started_at, task.rendered_at, task.ended_at, task.fetched_at) == (None, None, None, None)
    assert (task.attempts, task.error, task.image_bytes) == (0, None, None)


def test_unknown_ids_are_none(store):
    assert store.get("0123456789abcdef") is None
    assert store.cancel("0123456789abcdef") is None
    assert store.mark_fetched("0123456789abcdef") is False


def test_ids_drawn_twice_are_drawn_again(store, monkeypatch):
    first = store.add(new())
    drawn = iter([first.id, first.id, "00000000000000aa"])
    monkeypatch.setattr("taskqueue.store.new_task_id", lambda: next(drawn))
    second = store.add(new())
    assert second.id == "00000000000000aa" and store.get(first.id).id == first.id


def test_add_all_returns_the_tasks_in_order_with_increasing_sequence(store):
    tasks = store.add_all([new(f"p{i}") for i in range(5)])
    assert [t.params.prompt for t in tasks] == [f"p{i}" for i in range(5)]
    assert [t.seq for t in tasks] == sorted(t.seq for t in tasks) and len({t.seq for t in tasks}) == 5


def test_counts_by_status_name_every_status(store):
    assert store.count_by_status() == {"waiting": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    done(store)
    store.add(new())
    store.cancel(store.add(new()).id)
    assert store.count_by_status() == {"waiting": 1, "running": 0, "done": 1, "failed": 0, "cancelled": 1}


def test_counting_waiting_tasks_per_client(store):
    store.add_all([new(client="a"), new(client="a"), new(client="b"), new()])
    assert store.count_waiting() == 4
    assert (store.count_waiting("a"), store.count_waiting("b"), store.count_waiting("c")) == (2, 1, 0)
    assert store.claim_next().client == "a"  # the first waiting task, which is a's
    assert store.count_waiting("a") == 1 and store.count_waiting() == 3  # running tasks are not waiting


# -- the caps ----------------------------------------------------------------------------------------------


def test_the_queue_cap_holds_all_or_nothing(store):
    cap = Capacity(waiting=3, waiting_per_client=10)
    store.add_all([new(), new()], cap)
    with pytest.raises(OverCapacity) as caught:
        store.add_all([new(), new()], cap)  # 2 + 2 > 3: neither is added
    assert (caught.value.scope, caught.value.limit) == ("queue", 3) and str(caught.value) == "queue: 3"
    assert store.count_waiting() == 2
    store.add_all([new()], cap)  # exactly at the cap
    assert store.count_waiting() == 3
    with pytest.raises(OverCapacity):
        store.add_all([new()], cap)


def test_the_client_cap_counts_each_clients_waiting_tasks(store):
    cap = Capacity(waiting=100, waiting_per_client=2)
    store.add_all([new(client="a")], cap)
    with pytest.raises(OverCapacity) as caught:
        store.add_all([new(client="a"), new(client="a")], cap)
    assert (caught.value.scope, caught.value.limit) == ("client", 2)
    store.add_all([new(client="a"), new(client="b"), new(client="b")], cap)  # a: 2, b: 2
    assert (store.count_waiting("a"), store.count_waiting("b")) == (2, 2)
    store.add_all([new(), new(), new()], cap)  # no client: only the queue's cap applies
    assert store.claim_next().client == "a"  # a's first task leaves the queue: a has room for one more
    store.add_all([new(client="a")], cap)
    with pytest.raises(OverCapacity):
        store.add_all([new(client="a")], cap)


def test_running_tasks_do_not_count_against_the_caps(store):
    running(store, client="a")
    store.add_all([new(client="a")], Capacity(waiting=1, waiting_per_client=1))
    assert store.count_waiting() == 1


# -- transitions -------------------------------------------------------------------------------------------


def test_claiming_takes_priority_first_then_first_come(store):
    normal = store.add_all([new("n1"), new("n2")])
    urgent = store.add(new("u1", priority=True))
    assert [store.claim_next().id for _ in range(3)] == [urgent.id, normal[0].id, normal[1].id]
    assert store.claim_next() is None


def test_a_claim_counts_an_attempt_and_clears_the_times_of_an_earlier_one(store):
    task = running(store)
    assert task.status is TaskStatus.RUNNING and task.attempts == 1
    store.mark_started(task.id, 5.0)
    store.mark_rendered(task.id, 6.0)
    assert store.requeue(task.id, count_attempt=True)
    again = store.claim_next()
    assert again.id == task.id and again.attempts == 2
    assert (again.started_at, again.rendered_at) == (None, None)


def test_started_and_rendered_are_recorded_only_on_running_tasks(store):
    task = running(store)
    store.mark_started(task.id, 5.0)
    assert store.mark_rendered(task.id, 6.0) is True
    recorded = store.get(task.id)
    assert (recorded.started_at, recorded.rendered_at, recorded.status) == (5.0, 6.0, TaskStatus.RUNNING)
    waiting = store.add(new())
    store.mark_started(waiting.id, 7.0)
    assert store.mark_rendered(waiting.id, 8.0) is False
    assert store.get(waiting.id).started_at is None and store.get(waiting.id).rendered_at is None


def test_done_and_failed_only_from_running(store):
    task = running(store)
    assert store.mark_done(task.id, 9.0, 321) is True
    finished = store.get(task.id)
    assert (finished.status, finished.ended_at, finished.image_bytes) == (TaskStatus.DONE, 9.0, 321)
    assert store.mark_done(task.id, 10.0, 1) is False and store.get(task.id).ended_at == 9.0
    assert store.mark_failed(task.id, 10.0, "late") is False and store.get(task.id).error is None
    other = running(store)
    assert store.mark_failed(other.id, 11.0, "generation failed: boom") is True
    failed = store.get(other.id)
    assert (failed.status, failed.ended_at, failed.error) == (TaskStatus.FAILED, 11.0, "generation failed: boom")
    waiting = store.add(new())
    assert store.mark_done(waiting.id, 1.0, 1) is False and store.mark_failed(waiting.id, 1.0, "x") is False
    assert store.get(waiting.id).status is TaskStatus.WAITING


def test_an_image_finished_after_its_task_was_cancelled_is_not_recorded(store):
    task = running(store)
    store.cancel(task.id)
    assert store.mark_done(task.id, 9.0, 100) is False
    assert store.get(task.id).status is TaskStatus.CANCELLED and store.get(task.id).image_bytes is None


def test_cancel_returns_the_task_as_it_was_and_ends_only_open_tasks(store, clock):
    waiting = store.add(new())
    clock.now = 1500.0
    before = store.cancel(waiting.id)
    assert before.status is TaskStatus.WAITING and before.ended_at is None
    after = store.get(waiting.id)
    assert after.status is TaskStatus.CANCELLED and after.ended_at == 1500.0
    task = running(store)
    assert store.cancel(task.id).status is TaskStatus.RUNNING
    finished = done(store, at=1600.0)
    clock.now = 1700.0
    assert store.cancel(finished.id).status is TaskStatus.DONE
    assert store.get(finished.id).status is TaskStatus.DONE and store.get(finished.id).ended_at == 1600.0
    assert store.cancel(waiting.id).status is TaskStatus.CANCELLED
    assert store.get(waiting.id).ended_at == 1500.0  # cancelling twice changes nothing


def test_cancel_all_ends_open_tasks_only(store, clock):
    finished = done(store, at=1600.0)
    open_ids = {running(store).id, store.add(new()).id, store.add(new(priority=True)).id}
    clock.now = 1800.0
    cancelled = store.cancel_all()
    assert {t.id for t in cancelled} == open_ids
    assert {t.status for t in cancelled} == {TaskStatus.WAITING, TaskStatus.RUNNING}  # as they were
    assert all(store.get(i).status is TaskStatus.CANCELLED and store.get(i).ended_at == 1800.0 for i in open_ids)
    assert store.get(finished.id).status is TaskStatus.DONE and store.get(finished.id).ended_at == 1600.0
    assert store.cancel_all() == [] and store.count_waiting() == 0


def test_requeue_puts_a_running_task_back_in_its_place(store):
    first = store.add(new("first"))
    second = store.add(new("second"))
    assert store.claim_next().id == first.id
    store.mark_started(first.id, 5.0)
    assert store.requeue(first.id, count_attempt=True) is True
    back = store.get(first.id)
    assert back.status is TaskStatus.WAITING and back.attempts == 1 and back.started_at is None
    assert store.claim_next().id == first.id  # ahead of `second` again: it kept its place
    assert store.requeue(first.id, count_attempt=False) is True
    assert store.get(first.id).attempts == 1  # this attempt is not charged: 2 - 1
    assert store.requeue(second.id, count_attempt=True) is False  # only running tasks go back
    assert store.get(second.id).status is TaskStatus.WAITING


def test_an_uncharged_requeue_never_makes_attempts_negative(store, tmp_path):
    task = running(store)
    store._connection().execute("UPDATE tasks SET attempts = 0 WHERE id = ?", (task.id,))
    assert store.requeue(task.id, count_attempt=False)
    assert store.get(task.id).attempts == 0


def test_recovery_after_a_crash_requeues_or_fails_by_attempts(store, clock):
    once = running(store, prompt="once")
    twice = running(store, prompt="twice")
    assert store.requeue(twice.id, count_attempt=True)
    assert store.claim_next().id == twice.id  # its second attempt
    store.mark_started(once.id, 5.0)
    waiting = store.add(new())
    clock.now = 3000.0
    recovery = store.recover_interrupted(2, "the server stopped")
    assert (recovery.requeued, recovery.failed) == ((once.id,), (twice.id,))
    requeued, failed = store.get(once.id), store.get(twice.id)
    assert requeued.status is TaskStatus.WAITING and requeued.started_at is None and requeued.attempts == 1
    assert (failed.status, failed.error, failed.ended_at) == (TaskStatus.FAILED, "the server stopped", 3000.0)
    assert store.get(waiting.id).status is TaskStatus.WAITING
    assert store.recover_interrupted(2, "again") == type(recovery)((), ())


# -- images: delete once, drop with a reason ---------------------------------------------------------------


def test_an_image_is_marked_fetched_once(store, clock):
    task = done(store)
    clock.now = 2500.0
    assert store.mark_fetched(task.id) is True
    assert store.get(task.id).fetched_at == 2500.0
    clock.now = 2600.0
    assert store.mark_fetched(task.id) is False  # a second fetch must not delete anything
    assert store.get(task.id).fetched_at == 2500.0
    assert store.mark_fetched(running(store).id) is False
    assert store.mark_fetched(store.add(new()).id) is False


def test_only_one_of_many_simultaneous_fetches_gets_the_image(tmp_path):
    path = tmp_path / "tasks.sqlite3"
    store = TaskStore(path)
    task = done(store)
    results = []
    barrier = threading.Barrier(8, timeout=10)

    def fetch() -> None:
        mine = TaskStore(path)
        barrier.wait()
        results.append(mine.mark_fetched(task.id))
        mine.close()

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    store.close()


def test_dropping_an_unfetched_image_records_why(store, clock):
    task = done(store)
    clock.now = 2700.0
    assert store.drop_image(task.id, "over the limit") is True
    dropped = store.get(task.id)
    assert (dropped.status, dropped.fetched_at, dropped.error) == (TaskStatus.DONE, 2700.0, "over the limit")
    assert store.drop_image(task.id, "again") is False and store.get(task.id).error == "over the limit"
    fetched = done(store)
    store.mark_fetched(fetched.id)
    assert store.drop_image(fetched.id, "too late") is False and store.get(fetched.id).error is None
    assert store.drop_image(running(store).id, "not done") is False


def test_stored_images_are_the_unfetched_done_ones_oldest_first(store):
    late = done(store, at=3000.0, image_bytes=30)
    early = done(store, at=1000.0, image_bytes=10)
    tie_first = done(store, at=2000.0, image_bytes=20)
    tie_second = done(store, at=2000.0, image_bytes=25)
    fetched = done(store, at=500.0, image_bytes=1000)
    store.mark_fetched(fetched.id)
    failed = running(store)
    store.mark_failed(failed.id, 100.0, "x")
    running(store)
    assert [t.id for t in store.unfetched_images()] == [early.id, tie_first.id, tie_second.id, late.id]
    assert store.stored_images() == (4, 85)
    store.mark_fetched(early.id)
    assert store.stored_images() == (3, 75)


def test_no_stored_images_is_zero_bytes(store):
    assert store.stored_images() == (0, 0)
    assert store.unfetched_images() == []


# -- retention ---------------------------------------------------------------------------------------------


def test_expiry_forgets_finished_tasks_that_ended_strictly_before_the_time(store, clock):
    old_done = done(store, at=100.0)
    old_failed = running(store)
    store.mark_failed(old_failed.id, 100.0, "x")
    clock.now = 100.0
    old_cancelled = store.add(new())
    store.cancel(old_cancelled.id)
    boundary = done(store, at=200.0)
    young = done(store, at=300.0)
    on_engine = running(store)
    waiting = store.add(new())
    expired = store.expire(200.0)
    assert {t.id for t in expired} == {old_done.id, old_failed.id, old_cancelled.id}
    assert {t.status for t in expired} == {TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED}
    for task in expired:
        assert store.get(task.id) is None
    for task in (boundary, young, waiting, on_engine):
        assert store.get(task.id) is not None
    assert store.expire(10**12) and store.get(waiting.id) is not None and store.get(on_engine.id) is not None


# -- listings ----------------------------------------------------------------------------------------------


def test_listings_page_through_running_waiting_then_finished(store):
    fetched = done(store, at=1.0)
    store.mark_fetched(fetched.id)
    finished = done(store, at=2.0)
    failed = running(store)
    store.mark_failed(failed.id, 3.0, "x")
    on_engine = running(store)
    waiting = store.add_all([new(), new(), new()])
    urgent = store.add(new(priority=True))
    everything = [on_engine.id, urgent.id, *(t.id for t in waiting), finished.id, failed.id]
    tasks, total = store.listed(tuple(TaskStatus), 100, 0)
    assert [t.id for t in tasks] == everything and total == 7  # a fetched image's task is not listed
    pages = [store.listed(tuple(TaskStatus), 2, offset) for offset in range(0, 8, 2)]
    assert [t.id for page, _ in pages for t in page] == everything
    assert {total for _, total in pages} == {7}
    assert store.listed(tuple(TaskStatus), 0, 0) == ([], 7)
    assert [t.id for t in store.listed((TaskStatus.WAITING,), 2, 1)[0]] == [waiting[0].id, waiting[1].id]
    assert store.listed((TaskStatus.DONE, TaskStatus.FAILED), 10, 0) == ([store.get(finished.id),
                                                                         store.get(failed.id)], 2)  # fmt: skip
    assert store.listed((TaskStatus.CANCELLED,), 10, 0) == ([], 0)
    assert store.listed((TaskStatus.RUNNING,), 10, 5) == ([], 1)
    assert [t.id for t in store.running()] == [on_engine.id]


# -- the waiting queue, as the planner reads it ------------------------------------------------------------


def test_the_queue_is_read_in_order_with_what_the_planner_needs(store):
    a, b = store.add_all([new(width=512, height=512, steps=4), new(steps=3)])
    urgent = store.add(new(width=256, height=512, steps=5, priority=True))
    queued = list(store.queue())
    assert [q.id for q in queued] == [urgent.id, a.id, b.id]  # priority first, then in order
    first = queued[1]
    assert (first.megapixels, first.steps, first.priority) == (pytest.approx(0.25), 4, False)
    assert queued[0].priority and first.variant == b.variant.key
    assert [q.id for q in store.queue(after_seq=a.seq)] == [b.id]  # the tasks that joined after a
    store.cancel(a.id)
    assert [q.id for q in store.queue()] == [urgent.id, b.id]


# -- the forecast history ----------------------------------------------------------------------------------


def timing(key: str, seconds: float) -> Timing:
    return Timing(key, 0.25, 4, 0.1, seconds, 0.05)


def test_timings_are_kept_per_model_newest_last_and_bounded(store):
    for i in range(505):
        store.add_timing(timing("demo", float(i)))
    store.add_timing(timing("dev@q8", 9.0))
    history = store.timings(1000)
    assert [t.loop for t in history if t.key == "dev@q8"] == [9.0]
    kept = [t.loop for t in history if t.key == "demo"]
    assert len(kept) == 500 and kept[0] == 5.0 and kept[-1] == 504.0  # the newest 500 of each model
    assert [t.loop for t in store.timings(3) if t.key == "demo"] == [502.0, 503.0, 504.0]


def test_load_times_are_smoothed_per_model(store):
    for seconds in (10.0, 20.0, 30.0):
        store.add_load("dev", seconds)
    store.add_load("schnell", 5.0)
    store.add_load("dev", 40.0, worker="studio")
    assert store.loads() == {("local", "dev"): pytest.approx(22.5), ("local", "schnell"): 5.0, ("studio", "dev"): 40.0}


def test_each_thread_keeps_its_own_connection_until_closed(store):
    seen = []
    thread = threading.Thread(target=lambda: seen.extend([store._connection(), store._connection()]))
    thread.start()
    thread.join()
    mine = store._connection()
    assert mine is store._connection() and seen[0] is seen[1] and seen[0] is not mine
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        mine.execute("SELECT 1")  # closed
    store.close()  # twice: nothing to close
    assert store.count_waiting() == 0  # a closed store reconnects on the next use
    assert store._connection() is not mine


def test_closing_from_a_thread_that_never_used_the_store_is_harmless(store):
    store.add(new())
    problems = []

    def close_elsewhere() -> None:
        try:
            store.close()
        except Exception as error:  # a shutdown path must not raise for a thread without a connection
            problems.append(error)

    thread = threading.Thread(target=close_elsewhere)
    thread.start()
    thread.join()
    assert problems == []
    assert store.count_waiting() == 1  # this thread's connection is untouched


def test_a_store_makes_its_directory(tmp_path):
    store = TaskStore(tmp_path / "not" / "there" / "yet" / "tasks.sqlite3")
    assert store.add(new()).status is TaskStatus.WAITING
    assert (tmp_path / "not" / "there" / "yet" / "tasks.sqlite3").is_file()
    store.close()


def test_an_integrity_error_other_than_an_id_collision_is_raised_not_retried_forever(store, monkeypatch):
    """A task the store cannot take (no seed) is refused at once: drawing new ids for it forever held the write
    lock, and every other write of the server waited behind it (mutation testing found it)."""
    draws = []
    real_token_hex = secrets.token_hex

    def token_hex() -> str:
        draws.append(1)
        if len(draws) > 50:  # stop the endless loop this test would otherwise start
            raise RuntimeError(f"drew {len(draws)} task ids for one task")
        return real_token_hex(8)

    monkeypatch.setattr("taskqueue.store.new_task_id", token_hex)
    no_seed = NewTask(GenerationParams("p", None, 64, 64, 1, 3.5), OutputSpec(), False, "demo", Variant("demo"))
    with pytest.raises(sqlite3.IntegrityError):
        store.add(no_seed)
    assert len(draws) == 1
    assert store.count_waiting() == 0
