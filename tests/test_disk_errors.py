"""Disk full or unwritable data directory: a clear error at start-up (exit code 2, the directory named), or a
failed task with the reason, while the server keeps serving and later tasks work once the disk is fixed.

Running as root, permissions stop nothing, so a read-only directory and a full disk are made for real in a
private mount namespace (a read-only bind mount, a tiny tmpfs) where the machine allows it; elsewhere the
image directory is replaced by a file, which fails the same write path portably."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.mounts import fill, free, in_private_mounts, mounts_allowed
from harness.server_process import ROOT, SERVER, wait_for


def start_up(data_dir: Path, wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SERVER), "--engine", "demo", "--port", "0", "--data-dir", str(data_dir)]
    return subprocess.run(
        [*(wrap or []), *command], cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def require_private_mounts(tmp_path: Path) -> None:
    if (why_not := mounts_allowed()) is not None:
        pytest.skip(why_not)


@pytest.fixture
def private_mounts(tmp_path) -> None:
    require_private_mounts(tmp_path)


def assert_refused_start(result: subprocess.CompletedProcess, *words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "cannot start" in output
    for word in words:
        assert word in output, output
    assert "Traceback" not in output


# -- at start-up -----------------------------------------------------------------------------------------


def test_a_data_dir_that_is_a_file_stops_start_up(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")
    assert_refused_start(start_up(data_dir), f"the data directory {data_dir} is not a directory")


def test_a_data_dir_below_a_file_stops_start_up(tmp_path):
    (tmp_path / "file").write_text("")
    data_dir = tmp_path / "file" / "data"
    assert_refused_start(start_up(data_dir), f"the data directory {data_dir} is not writable: Not a directory")


def test_an_image_dir_that_is_a_file_stops_start_up(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "images").write_text("")
    assert_refused_start(start_up(data_dir), f"the image directory {data_dir / 'images'} is not a directory")


def test_a_read_only_data_dir_stops_start_up(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if os.geteuid() != 0:
        data_dir.chmod(0o500)
        try:
            assert_refused_start(start_up(data_dir), f"the data directory {data_dir} is not writable")
        finally:
            data_dir.chmod(0o700)
        return
    require_private_mounts(tmp_path)  # root ignores permissions: make the directory read-only for real
    result = start_up(data_dir, wrap=in_private_mounts('mount --bind -o ro "$1" "$1"', data_dir))
    assert_refused_start(result, f"the data directory {data_dir} is not writable: Read-only file system")


# -- while running ---------------------------------------------------------------------------------------


def test_an_image_that_cannot_be_stored_fails_its_task_and_the_server_recovers(server_factory):
    server = server_factory()
    kept = server.generate("stored before the trouble")
    server.wait_status(kept, "done")

    images = server.data_dir / "images"
    away = images.with_name("images.away")
    images.rename(away)
    images.write_text("the image directory is now a file")  # every write below it fails, even as root
    try:
        lost = server.generate("cannot be stored")
        status = server.wait_status(lost, "failed")
        assert "could not store the image" in status["error"] and "Not a directory" in status["error"]
        unreadable = server.get("/api/image", params={"task_id": kept})
        assert unreadable.status_code == 503 and "cannot be read now" in unreadable.json()["message"]
        health = server.get("/api/health")  # the worker is fine, but no image can be stored: not healthy
        assert health.status_code == 503 and "images directory" in health.json()["error"]
        assert server.status(kept)["status"] == "done"
    finally:
        images.unlink()
        away.rename(images)

    assert server.get("/api/image", params={"task_id": kept}).status_code == 200  # nothing was lost
    later = server.generate("after the fix")
    assert server.wait_status(later, "done", "failed")["error"] is None
    assert server.get("/api/image", params={"task_id": later}).status_code == 200
    assert server.worker_pid() is not None and server.get("/api/health").json()["worker_restarts"] == 0


def test_a_full_disk_fails_the_task_with_the_reason_and_frees_its_space(server_factory, private_mounts):
    server = server_factory(start=False)
    images = server.data_dir / "images"
    images.mkdir(parents=True)
    server.command = in_private_mounts('mount -t tmpfs -o size=1m tmpfs "$1"', images) + server.command
    server.start()

    too_big = server.generate("larger than the disk", width=2560, height=2560, format="PNG")  # ~3.5 MB
    status = server.wait_status(too_big, "failed")
    assert "could not store the image" in status["error"] and "No space left on device" in status["error"]
    assert server.get("/api/health").status_code == 200
    # The half-written file was removed: a 0.8 MB image fits on the 1 MB disk again.
    fits = server.generate("fits", width=1024, height=1024, format="PNG")
    assert server.wait_status(fits, "done", "failed")["error"] is None
    assert len(server.get("/api/image", params={"task_id": fits}).content) > 500_000
    small = server.generate("and another")
    assert server.wait_status(small, "done", "failed")["error"] is None


def test_a_full_data_disk_holds_the_queue_and_health_says_so_until_space_returns(server_factory, private_mounts):
    """Issue 14, items 1 and 4: the whole data directory (its SQLite store too) on a 4 MB tmpfs, filled while a
    task renders. The task's end cannot be recorded: it is kept and recorded once space returns (here: failed,
    its image could not be written), the queue moves on by itself, health says what is wrong meanwhile, and
    the API answers a 503 an operator understands instead of a generic 500."""
    server = server_factory(start=False, demo_speed=2)
    server.data_dir.mkdir(parents=True)
    server.command = in_private_mounts('mount -t tmpfs -o size=4m tmpfs "$1"', server.data_dir) + server.command
    server.start()
    first = server.generate("ends on a full disk", width=1024, height=1024, steps=6, format="PNG")
    wait_for_running = server.wait_status(first, "running")
    assert wait_for_running["status"] == "running"
    fill(server.process.pid, server.data_dir)
    health = wait_for(lambda: (h := server.get("/api/health")).status_code == 503 and h.json(), 60,
                      what="health to report the full disk")  # fmt: skip
    assert "data directory cannot be written" in health["error"]
    refused = server.post("/api/generate", json={"prompt": "while full"})
    assert refused.status_code == 503 and "data directory cannot be written" in refused.json()["message"]
    assert server.status(first)["status"] == "running"  # not lost: kept until it can be recorded
    free(server.process.pid, server.data_dir)
    ended = server.wait_status(first, "done", "failed", timeout=30)
    assert ended["status"] == "done" or "No space left" in ended["error"]
    wait_for(lambda: server.get("/api/health").status_code == 200, 30, what="health to recover")
    after = server.generate("after the space returned")
    assert server.wait_status(after, "done", timeout=60)["status"] == "done"


def replace_with_a_file(path: Path) -> None:
    """Put a plain file where the directory was; the server may make the directory again meanwhile: retry."""

    def swapped() -> bool:
        shutil.rmtree(path, ignore_errors=True)
        try:
            path.write_text("not a directory")
        except (IsADirectoryError, FileExistsError):
            return False
        return True

    wait_for(swapped, 10, what="the images directory to be replaced by a file")


def test_an_images_directory_removed_while_serving_is_made_again_and_fetches_say_what_happened(server_factory):
    """Issue 14, item 7: removing images/ used to fail every later task and make fetches say "already fetched"."""
    server = server_factory()
    images = server.data_dir / "images"
    kept = server.generate("stored before the clean-up")
    server.wait_status(kept, "done")
    shutil.rmtree(images)
    lost = server.get("/api/image", params={"task_id": kept})
    assert lost.status_code in (404, 410, 503)
    assert "missing" in lost.json()["message"] and "already fetched" not in lost.json()["message"]
    after = server.generate("after the clean-up")
    assert server.wait_status(after, "done", "failed")["error"] is None
    assert server.get("/api/image", params={"task_id": after}).content[:2] == b"\xff\xd8"  # a JPEG

    replace_with_a_file(images)  # something the server cannot repair by itself: health must say so
    health = wait_for(lambda: (h := server.get("/api/health")).status_code == 503 and h.json(), 30,
                      what="health to report the images directory")  # fmt: skip
    assert "images directory" in health["error"] and "not a directory" in health["error"]
    failed = server.generate("while images/ is a file")
    assert "could not store the image" in server.wait_status(failed, "done", "failed")["error"]
    images.unlink()
    wait_for(lambda: server.get("/api/health").status_code == 200, 30, what="health to recover")
    last = server.generate("once it is a directory again")
    assert server.wait_status(last, "done", "failed")["error"] is None
