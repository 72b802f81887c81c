"""A listing is one consistent state of the queue, even while the scheduler moves tasks between states."""

from __future__ import annotations

import threading

from core.models import Variant
from core.tasks import GenerationParams, OutputSpec, TaskStatus
from taskqueue.store import NewTask, TaskStore

DEMO = Variant("demo")


def test_a_task_moving_from_waiting_to_running_is_never_missing_from_a_listing(tmp_path):
    store = TaskStore(tmp_path / "tasks.sqlite3")
    ids = {
        store.add(NewTask(GenerationParams(f"p{i}", i, 64, 64, 1, 3.5), OutputSpec(), False, "demo", DEMO)).id
        for i in range(300)
    }
    claimed = threading.Event()

    def claim_all() -> None:
        writer = TaskStore(tmp_path / "tasks.sqlite3")  # the scheduler's side: its own connection
        while writer.claim_next() is not None:
            pass
        writer.close()
        claimed.set()

    thread = threading.Thread(target=claim_all)
    thread.start()
    listings = 0
    while not claimed.is_set() or listings == 0:
        tasks, total = store.listed(tuple(TaskStatus), 1000, 0)
        assert {t.id for t in tasks} == ids
        assert total == len(ids)
        listings += 1
    thread.join()
    assert {t.status for t in store.listed(tuple(TaskStatus), 1000, 0)[0]} == {TaskStatus.RUNNING}
