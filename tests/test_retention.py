"""Retention: finished tasks and unfetched images expire, and the stored images are capped by count and bytes,
oldest first, so an unattended server cannot fill its disk."""

from __future__ import annotations

import dataclasses

import pytest

from core.errors import ImageNotAvailable, TaskNotFound
from core.models import Variant
from core.tasks import GenerationParams, ImageFormat, OutputSpec, Task
from harness.server_process import wait_for
from taskqueue.housekeeping import StorageLimits
from taskqueue.parts import Parts
from taskqueue.service import TaskService
from taskqueue.store import NewTask

HOUR = 3600.0
T0 = 1_800_000_000.0  # the fake clock: every time below is passed in explicitly, relative to this


class Queue:
    """The service and the parts under it: tasks are put in place through the store, swept by the housekeeper."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.service = TaskService(parts)
        self.store = parts.store

    def sweep(self, now: float) -> int:
        return self.parts.housekeeper.sweep(now)

    def image(self, task_id: str, delete: bool = True):
        return self.service.image(task_id, delete)

    def task(self, task_id: str) -> Task:
        return self.service.task(task_id)


def make_queue(parts_factory, **storage) -> Queue:
    return Queue(parts_factory(storage=dataclasses.replace(StorageLimits(), **storage)))


@pytest.fixture
def service(parts_factory) -> Queue:
    return make_queue(parts_factory, retention_seconds=24 * HOUR, max_stored_images=1000)


def add_task(service: Queue, prompt: str = "x") -> Task:
    params = GenerationParams(prompt=prompt, seed=1, width=256, height=256, steps=2, guidance=3.5)
    return service.store.add(NewTask(params, OutputSpec(ImageFormat.PNG), False, "demo", Variant("demo")))


def finished(service: Queue, ended_at: float, outcome: str = "done", size: int = 100) -> Task:
    """A task that ran and ended at `ended_at`; a done one has an image file of `size` bytes."""
    task = add_task(service)
    assert service.store.claim_next().id == task.id
    if outcome == "done":
        service.parts.images.path(task.id, ImageFormat.PNG).write_bytes(b"\x89" * size)
        assert service.store.mark_done(task.id, ended_at, size)
    else:
        assert service.store.mark_failed(task.id, ended_at, "generation failed: boom")
    return service.store.get(task.id)


def stored_files(service: Queue) -> set[str]:
    return {path.name for path in service.parts.images.directory.iterdir()}


def test_finished_tasks_and_unfetched_images_expire_after_the_retention_time(service):
    old_image = finished(service, T0)
    old_failure = finished(service, T0 + 1, outcome="failed")
    young_image = finished(service, T0 + 2 * HOUR)
    waiting = add_task(service)

    assert service.sweep(T0 + 24 * HOUR - 1) == 0  # not yet: retention is measured from the end
    assert service.sweep(T0 + 24 * HOUR + 2) == 2
    for gone in (old_image, old_failure):
        with pytest.raises(TaskNotFound):
            service.task(gone.id)
    assert stored_files(service) == {f"{young_image.id}.png"}
    data, _ = service.image(young_image.id, delete=False)
    assert len(data) == 100
    assert service.task(waiting.id).status.value == "waiting"  # tasks not finished never expire

    assert service.sweep(T0 + 26 * HOUR + 1) == 1
    assert stored_files(service) == set()
    assert service.task(waiting.id).status.value == "waiting"


def test_fetched_images_leave_their_task_until_it_expires(service):
    task = finished(service, T0)
    service.image(task.id)  # fetch once: the file goes at once, the task stays for its status
    assert stored_files(service) == set()
    assert service.task(task.id).fetched_at is not None
    assert service.sweep(T0 + 24 * HOUR + 1) == 1
    with pytest.raises(TaskNotFound):
        service.task(task.id)


def test_the_oldest_unfetched_images_go_beyond_the_count_limit(parts_factory):
    service = make_queue(parts_factory, max_stored_images=3)
    tasks = [finished(service, T0 + minute * 60) for minute in (4, 0, 3, 1, 2)]  # ended out of order
    assert service.sweep(T0 + HOUR) == 2
    oldest = {tasks[1].id, tasks[3].id}  # ended at minutes 0 and 1
    assert stored_files(service) == {f"{t.id}.png" for t in tasks if t.id not in oldest}
    for task_id in oldest:
        with pytest.raises(ImageNotAvailable, match="over the limit of 3 stored images"):
            service.image(task_id)
        assert service.task(task_id).status.value == "done"  # the task is kept; only its image went
    assert service.store.stored_images() == (3, 300)
    assert service.sweep(T0 + HOUR) == 0  # within the limit now: nothing more goes


def test_the_oldest_unfetched_images_go_beyond_the_byte_limit(parts_factory):
    service = make_queue(parts_factory, max_stored_images=1000, max_stored_bytes=1000)
    tasks = [finished(service, T0 + i, size=size) for i, size in enumerate((400, 300, 200, 300))]
    assert service.sweep(T0 + 10) == 1  # 1200 bytes: the oldest (400) goes, 800 are left
    assert service.store.stored_images() == (3, 800)
    with pytest.raises(ImageNotAvailable, match=r"over the limit of 0\.001 MB of stored images"):
        service.image(tasks[0].id)
    finished(service, T0 + 20, size=900)  # 1700 bytes: three more must go, oldest first, the new one stays
    assert service.sweep(T0 + 30) == 3
    assert service.store.stored_images() == (1, 900)


def test_a_single_image_above_the_byte_limit_is_dropped_too(parts_factory):
    service = make_queue(parts_factory, max_stored_bytes=50)
    task = finished(service, T0, size=100)
    assert service.sweep(T0 + 1) == 1
    assert stored_files(service) == set()
    with pytest.raises(ImageNotAvailable, match="stored images"):
        service.image(task.id)


# -- the real server -------------------------------------------------------------------------------------


def test_the_server_keeps_only_the_newest_images_and_forgets_old_tasks(server_factory):
    server = server_factory("--max-stored-images", "2", "--housekeeping-seconds", "0.2")
    task_ids = []
    for index in range(4):  # one after the other: their end times are in submission order
        task_ids.append(server.generate(f"image {index}"))
        server.wait_status(task_ids[-1], "done")

    images = server.data_dir / "images"
    wait_for(lambda: len(list(images.iterdir())) == 2, 10, what="the image store to shrink to 2")
    for task_id in task_ids[:2]:
        response = server.get("/api/image", params={"task_id": task_id})
        assert response.status_code == 404
        assert "over the limit of 2 stored images" in response.json()["message"]
    for task_id in task_ids[2:]:
        assert server.get("/api/image", params={"task_id": task_id}).status_code == 200
    assert server.wait_for_log(rf"\[{task_ids[0]}\] task {task_ids[0]}: image deleted unfetched")


def test_the_server_forgets_finished_tasks_after_the_retention_time(server_factory):
    server = server_factory("--retention-hours", str(1 / HOUR), "--housekeeping-seconds", "0.2")  # one second
    task_id = server.generate()
    server.wait_status(task_id, "done")
    wait_for(lambda: server.get("/api/status", params={"task_id": task_id}).status_code == 404, 10, what="expiry")
    assert not list((server.data_dir / "images").iterdir())


def test_the_stored_image_cap_holds_as_images_are_stored_not_per_sweep(server_factory):
    """Issue 14, item 9: with housekeeping an hour apart, a burst of images still never exceeds the cap: the
    oldest unfetched image goes as each new one is stored."""
    server = server_factory("--max-stored-images", "3", "--housekeeping-seconds", "3600", demo_speed=50)
    ids = [server.generate(f"burst {i}") for i in range(8)]
    for task_id in ids:
        server.wait_status(task_id)
    kept = [i for i in ids if server.get("/api/image", params={"task_id": i, "delete": "false"}).status_code == 200]
    assert kept == ids[-3:]  # the newest three
    gone = server.get("/api/image", params={"task_id": ids[0]})
    assert gone.status_code == 404 and "limit of 3 stored images" in gone.json()["message"]
    files = list((server.data_dir / "images").iterdir())
    assert len(files) == 3
