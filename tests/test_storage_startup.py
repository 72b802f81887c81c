"""The image directory against the real server: what start-up cleans, and the byte cap on stored images."""

from __future__ import annotations

from harness.server_process import RunningServer, wait_for


def make_images(server: RunningServer, count: int) -> list[str]:
    """`count` done, unfetched PNGs, one after the other (so they end in this order)."""
    task_ids = []
    for index in range(count):
        task_ids.append(server.generate(f"stored {index}", width=256, height=256, steps=1, format="PNG"))
        server.wait_status(task_ids[-1], "done")
    return task_ids


def test_half_written_files_left_by_a_crash_are_removed_at_start_up(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = server_factory(data_dir=data_dir, demo_speed=100)
    (kept,) = make_images(server, 1)
    image = server.get("/api/image", params={"task_id": kept, "delete": "false"}).content
    server.kill()  # as a power cut would: the next start finds what was being written
    images = data_dir / "images"
    strays = [
        images / f"{kept}.png.partial",  # an image being rewritten when the server died
        images / "0123456789abcdef.jpg.partial",  # one whose task never finished
        images / "fedcba9876543210.webp",  # an image no task knows of
    ]
    for stray in strays:
        stray.write_bytes(b"half an image")

    again = server_factory(data_dir=data_dir, demo_speed=100)
    assert sorted(path.name for path in images.iterdir()) == [f"{kept}.png"]
    again.wait_for_log(r"removed 3 stray file\(s\) from the image directory")
    fetched = again.get("/api/image", params={"task_id": kept})
    assert fetched.status_code == 200 and fetched.content == image  # the real image was not touched
    assert not list(images.iterdir())  # fetched with delete: gone


def test_images_beyond_the_byte_cap_go_oldest_first_and_their_fetch_says_why(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    first = server_factory(data_dir=data_dir, demo_speed=100)
    task_ids = make_images(first, 4)
    sizes = {task_id: (data_dir / "images" / f"{task_id}.png").stat().st_size for task_id in task_ids}
    assert first.stop() == 0
    # A cap the two newest fit under, and not the third: the two oldest must go.
    cap_bytes = sizes[task_ids[2]] + sizes[task_ids[3]] + 1
    assert cap_bytes < sizes[task_ids[1]] + sizes[task_ids[2]] + sizes[task_ids[3]]
    megabytes = cap_bytes / 1e6
    server = server_factory("--max-stored-mb", repr(megabytes), "--housekeeping-seconds", "0.2", data_dir=data_dir)

    images = data_dir / "images"
    wait_for(lambda: len(list(images.iterdir())) == 2, 10, what="the stored images to fit the byte cap")
    assert sorted(path.name for path in images.iterdir()) == sorted(f"{t}.png" for t in task_ids[2:])
    for task_id in task_ids[:2]:
        response = server.get("/api/image", params={"task_id": task_id})
        assert response.status_code == 404
        assert response.json()["message"].endswith(f"over the limit of {megabytes:g} MB of stored images.")
        assert server.status(task_id)["status"] == "done"  # the task is kept; only its image went
    for task_id in task_ids[2:]:
        assert server.get("/api/image", params={"task_id": task_id, "delete": "false"}).status_code == 200
    server.wait_for_log(rf"task {task_ids[0]}: image deleted unfetched, over the limit of {megabytes:g} MB")
    # New images keep the cap: the oldest of what is stored goes to make room.
    (newest,) = make_images(server, 1)
    wait_for(lambda: f"{task_ids[2]}.png" not in {p.name for p in images.iterdir()}, 10, what="the next oldest to go")
    assert server.get("/api/image", params={"task_id": newest, "delete": "false"}).status_code == 200
