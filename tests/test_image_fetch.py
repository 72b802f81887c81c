"""TaskService.image in process: an image is handed out, then deleted, exactly once; every refusal says why.

What a client relies on: `delete=true` (the default) gives the image and frees its disk space; a second fetch
is a 404 that says it was already fetched; `delete=false` leaves it for later; a task that has no image says
where it stands (waiting, running, failed and why, cancelled, deleted by the storage limits and why).
"""

from __future__ import annotations

import errno
import logging
import threading

import pytest

from core.errors import ImageNotAvailable, StorageUnavailable, TaskNotFound
from core.submissions import GenerationRequest
from core.tasks import ImageFormat

IMAGE = b"\x89PNG\r\n\x1a\n" + b"pixels" * 50


def add(service, image_format=ImageFormat.PNG):
    return service.submit(GenerationRequest("an image", width=64, height=64, steps=1, format=image_format)).task


def done_with_file(service, parts, image_format=ImageFormat.PNG, data=IMAGE):
    task = add(service, image_format)
    assert parts.store.claim_next().id == task.id
    parts.images.path(task.id, image_format).write_bytes(data)
    assert parts.store.mark_done(task.id, 10.0, len(data))
    return task


def refusal(service, task_id) -> ImageNotAvailable:
    with pytest.raises(ImageNotAvailable) as caught:
        service.image(task_id)
    return caught.value


@pytest.mark.parametrize("image_format", list(ImageFormat))
def test_a_fetch_hands_out_the_image_once_and_deletes_its_file(service, parts, image_format, caplog):
    task = done_with_file(service, parts, image_format)
    path = parts.images.path(task.id, image_format)
    with caplog.at_level(logging.INFO, logger="taskqueue"):
        assert service.image(task.id) == (IMAGE, image_format)
    (record,) = [r for r in caplog.records if "fetched" in r.getMessage()]
    assert record.getMessage() == f"task {task.id}: image fetched and deleted"
    assert record.task_id == task.id  # the log's [task id] column
    assert not path.exists()
    assert parts.store.get(task.id).fetched_at is not None
    second = refusal(service, task.id)
    assert str(second) == f"The image of task {task.id} was already fetched and deleted."
    assert (second.task_id, second.status) == (task.id, "done")


def test_without_delete_the_image_stays_for_the_next_fetch(service, parts):
    task = done_with_file(service, parts)
    for _ in range(3):
        assert service.image(task.id, delete=False) == (IMAGE, ImageFormat.PNG)
    assert parts.images.path(task.id, ImageFormat.PNG).exists()
    assert parts.store.get(task.id).fetched_at is None
    assert service.image(task.id, delete=True)[0] == IMAGE
    assert not parts.images.path(task.id, ImageFormat.PNG).exists()


def test_after_a_delete_even_a_fetch_without_delete_is_refused(service, parts):
    task = done_with_file(service, parts)
    service.image(task.id)
    parts.images.path(task.id, ImageFormat.PNG).write_bytes(b"a file that should not be there")
    assert "already fetched" in str(refusal(service, task.id))
    with pytest.raises(ImageNotAvailable):
        service.image(task.id, delete=False)  # the store says fetched: whatever is on disk is not handed out


def test_simultaneous_fetches_hand_the_image_to_each_and_delete_it_once(service, parts, monkeypatch):
    """Two clients fetching at once: both may read it (it exists until the first delete), but the file is
    deleted by exactly one of them."""
    task = done_with_file(service, parts)
    deletes = []
    real_delete = parts.images.delete
    monkeypatch.setattr(parts.images, "delete", lambda *args: deletes.append(args) or real_delete(*args))
    barrier = threading.Barrier(4, timeout=10)
    outcomes = []

    def fetch() -> None:
        barrier.wait()
        try:
            outcomes.append(service.image(task.id)[0])
        except ImageNotAvailable as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(deletes) == 1
    assert IMAGE in outcomes
    assert all(outcome == IMAGE or "already fetched" in outcome for outcome in outcomes)


def test_tasks_without_an_image_say_where_they_stand(service, parts):
    waiting = add(service)
    error = refusal(service, waiting.id)
    assert str(error) == f"No image: task {waiting.id} is still waiting in the queue."
    assert (error.status, error.task_id) == ("waiting", waiting.id)

    running = parts.store.claim_next()
    error = refusal(service, running.id)
    assert str(error) == f"No image: task {running.id} is still being generated." and error.status == "running"

    parts.store.mark_failed(running.id, 1.0, "generation failed: out of memory")
    error = refusal(service, running.id)
    assert str(error) == f"No image: task {running.id} failed: generation failed: out of memory."
    assert error.status == "failed"

    cancelled = add(service)
    service.cancel(cancelled.id)
    error = refusal(service, cancelled.id)
    assert str(error) == f"No image: task {cancelled.id} was cancelled." and error.status == "cancelled"


def test_an_image_dropped_by_the_storage_limits_says_why(service, parts):
    task = done_with_file(service, parts)
    assert parts.store.drop_image(task.id, "over the limit of 3 stored images")
    parts.images.delete(task.id, ImageFormat.PNG)
    error = refusal(service, task.id)
    assert str(error) == f"The image of task {task.id} was deleted: over the limit of 3 stored images."


def test_a_done_task_whose_file_vanished_is_refused_not_crashed(service, parts):
    task = done_with_file(service, parts)
    parts.images.delete(task.id, ImageFormat.PNG)  # deleted behind the server's back
    assert "removed outside the server" in str(refusal(service, task.id))  # not "already fetched": it was not
    assert parts.store.get(task.id).fetched_at is None  # nothing was handed out, so nothing marked


def test_an_unreadable_image_directory_is_storage_unavailable_and_loses_nothing(service, parts, monkeypatch):
    task = done_with_file(service, parts)

    def unreadable(*args):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(parts.images, "read", unreadable)
    with pytest.raises(StorageUnavailable) as caught:
        service.image(task.id)
    assert str(caught.value) == f"The image of task {task.id} cannot be read now: Permission denied."
    monkeypatch.undo()
    assert parts.store.get(task.id).fetched_at is None  # still there for when the disk is back
    assert service.image(task.id)[0] == IMAGE


def test_unknown_and_malformed_ids_are_not_found(service):
    for task_id in ("0123456789abcdef", "../../etc/passwd", "", "0123456789ABCDEF"):
        with pytest.raises(TaskNotFound):
            service.image(task_id)
