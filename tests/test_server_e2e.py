"""Tier 3: the real server process (waitress + worker process) on a free loopback port, over HTTP."""

from __future__ import annotations

import base64
import io
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from harness.server_process import wait_for
from worker.encoding import read_metadata


@pytest.mark.parametrize(("image_format", "pil_format"), [("JPEG", "JPEG"), ("png", "PNG"), ("WebP", "WEBP")])
def test_generate_status_image_flow_per_format(shared_server, image_format, pil_format):
    submitted = shared_server.post(
        "/api/generate", json={"prompt": "a red fox", "seed": 7, "width": 320, "height": 200, "steps": 2,
                               "format": image_format, "quality": 80},
    ).json()  # fmt: skip
    task_id = submitted["task_id"]
    shared_server.wait_status(task_id, "done")
    assert shared_server.status(task_id)["wait_remaining"] == 0

    response = shared_server.get("/api/image", params={"task_id": task_id, "delete": "false"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == f"image/{pil_format.lower()}"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == pil_format
    assert image.size == (320, 192)  # rounded down to multiples of 16
    metadata = read_metadata(response.content)
    assert metadata["prompt"] == "a red fox" and metadata["seed"] == "7" and metadata["engine"] == "demo"
    assert "demo" in metadata["Software"]

    encoded = shared_server.get("/api/image", params={"task_id": task_id, "base64": "true"})
    assert base64.b64decode(encoded.text) == response.content
    # delete defaults to true: the image was handed out once and is gone now
    gone = shared_server.get("/api/image", params={"task_id": task_id})
    assert gone.status_code == 404
    assert "already fetched" in gone.json()["message"]
    assert task_id not in [t["task_id"] for t in shared_server.get("/api/tasks").json()]


def test_same_prompt_and_seed_give_the_same_pixels_and_other_prompts_differ(shared_server):
    def pixels(prompt: str, seed: int) -> bytes:
        task_id = shared_server.generate(prompt, seed=seed, format="PNG")
        shared_server.wait_status(task_id)
        data = shared_server.get("/api/image", params={"task_id": task_id}).content
        return Image.open(io.BytesIO(data)).tobytes()

    assert pixels("a castle", 3) == pixels("a castle", 3)
    assert pixels("a castle", 3) != pixels("a meadow", 3)


def test_original_readme_curl_calls(shared_server):
    """The calls in the original server's README, byte for byte."""
    body = ('{\n  "prompt": "A beautiful landscape",\n  "seed": "1725311496",\n  "height": 256,\n  "width": 256,\n'
            '  "steps": 4,\n  "format": "JPEG",\n  "quality": 85,\n  "priority": false\n}')  # fmt: skip
    headers = {"accept": "application/json", "Content-Type": "application/json"}
    answer = shared_server.post("/api/generate", data=body, headers=headers).json()
    assert isinstance(answer["task_id"], str)
    assert isinstance(answer["task_length"], int)
    assert isinstance(answer["expected_time_seconds"], float)
    status = shared_server.get(f"/api/status?task_id={answer['task_id']}", headers={"accept": "application/json"})
    assert set(status.json()) >= {"pos", "status", "wait_remaining"}
    shared_server.wait_status(answer["task_id"])
    image = shared_server.get(f"/api/image?task_id={answer['task_id']}", headers={"accept": "application/json"})
    assert image.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (256, 256)


def test_fifty_concurrent_clients_each_get_their_own_image(server_factory):
    server = server_factory(demo_speed=400)
    barrier = threading.Barrier(50)

    def client(index: int) -> tuple[str, int, bytes]:
        session = requests.Session()
        barrier.wait()
        task_id = session.post(
            server.url + "/api/generate",
            json={"prompt": f"client {index}", "seed": index, "width": 64, "height": 64, "steps": 1, "format": "PNG"},
            timeout=30,
        ).json()["task_id"]
        wait_for(lambda: session.get(server.url + "/api/status", params={"task_id": task_id}, timeout=30)
                 .json()["status"] == "done", 120, interval=0.05, what=f"client {index}")  # fmt: skip
        data = session.get(server.url + "/api/image", params={"task_id": task_id}, timeout=30).content
        return task_id, index, data

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    assert len({task_id for task_id, _, _ in results}) == 50
    for _, index, data in results:
        metadata = read_metadata(data)
        assert metadata["prompt"] == f"client {index}" and metadata["seed"] == str(index)


def test_priority_task_runs_before_waiting_normal_tasks(server_factory):
    server = server_factory(demo_speed=20)
    blocker = server.generate("blocker", width=512, height=512, steps=8)
    server.wait_status(blocker, "running")
    normal = [server.generate(f"normal {i}") for i in range(3)]
    urgent = server.post("/api/generate", json={"prompt": "urgent", "width": 256, "height": 256, "steps": 2,
                                                "priority": True}).json()  # fmt: skip
    assert urgent["task_length"] == 1  # only the running task is ahead
    assert server.status(urgent["task_id"])["pos"] == 0
    assert server.status(normal[0])["pos"] == 1
    server.wait_status(normal[-1], "done")
    tasks = {t["task_id"]: t for t in server.get("/api/tasks").json()}
    assert tasks[urgent["task_id"]]["compute_time"] < tasks[normal[0]]["compute_time"]


def test_cancel_waiting_and_stop_running_task(server_factory):
    server = server_factory(demo_speed=2)
    running = server.generate("long one", width=1024, height=1024, steps=20)
    waiting = server.generate("never runs")
    after = server.generate("runs after")
    wait_for(lambda: (server.status(running).get("progress") or {}).get("step", 0) >= 1, 60, what="a step")

    assert server.get("/api/cancel", params={"task_id": waiting}).json()["previous_status"] == "waiting"
    stopped = server.get("/api/cancel", params={"task_id": running}).json()
    assert stopped["previous_status"] == "running" and stopped["status"] == "cancelled"
    server.wait_status(after, "done", timeout=60)  # the engine was freed at the next step, not after 20
    assert server.status(waiting)["status"] == "cancelled"
    assert server.status(running)["status"] == "cancelled"
    assert server.get("/api/image", params={"task_id": running}).status_code == 404
    assert server.get("/api/health").json()["worker_restarts"] == 0


def test_status_reports_step_progress_and_a_shrinking_wait(server_factory):
    server = server_factory(demo_speed=4)
    task_id = server.generate("progress", width=768, height=768, steps=10)
    first = wait_for(lambda: (s := server.status(task_id))["status"] == "running" and s["progress"]["step"] >= 1 and s,
                     60, what="first step")  # fmt: skip
    target = first["progress"]["step"] + 2
    later = wait_for(lambda: (s := server.status(task_id))["progress"]["step"] >= target and s, 60, what="two steps")
    assert later["progress"]["steps"] == 10
    assert later["wait_remaining"] < first["wait_remaining"]
    server.get("/api/cancel", params={"task_id": task_id})


def test_worker_crash_reruns_the_task_once_then_fails_it_and_the_queue_goes_on(server_factory):
    server = server_factory(demo_speed=50)
    doomed = server.generate("poison [demo-fault:step-1]")
    survivor = server.generate("fine")
    failed = server.wait_status(doomed, "failed", timeout=90)
    assert "killed by SIGKILL" in failed["error"] and "2 times" in failed["error"]
    server.wait_status(survivor, "done", timeout=60)
    health = server.get("/api/health").json()
    assert health["worker_restarts"] == 2 and health["worker_alive"]
    tasks = {t["task_id"]: t for t in server.get("/api/tasks").json()}
    assert tasks[doomed]["attempts"] == 2


def test_worker_killed_from_outside_mid_task_reruns_it(server_factory):
    import os
    import signal

    server = server_factory(demo_speed=3)
    task_id = server.generate("interrupted", width=768, height=768, steps=6)
    wait_for(lambda: (server.status(task_id).get("progress") or {}).get("step", 0) >= 1, 60, what="a step")
    os.kill(server.worker_pid(), signal.SIGKILL)
    server.wait_status(task_id, "done", timeout=120)
    assert server.get("/api/health").json()["worker_restarts"] == 1
    assert "will run again" in server.log_text()


def test_engine_exception_fails_only_that_task(shared_server):
    bad = shared_server.generate("broken [demo-fault:raise]")
    good = shared_server.generate("fine")
    failed = shared_server.wait_status(bad, "failed")
    assert "RuntimeError" in failed["error"]
    shared_server.wait_status(good, "done")


def test_restart_keeps_waiting_tasks_in_order_and_unfetched_images(server_factory, tmp_path):
    server = server_factory(demo_speed=50)
    finished = server.generate("finished before the restart", format="PNG")
    server.wait_status(finished)
    assert server.stop() == 0

    # Queue up while the engine is busy, then stop gracefully mid-task.
    server = server_factory(data_dir=server.data_dir, demo_speed=1)
    running = server.generate("interrupted by the restart", width=1024, height=1024, steps=30)
    server.wait_status(running, "running")
    waiting = [server.generate(f"waiting {i}") for i in range(3)]
    assert server.stop() == 0

    server = server_factory(data_dir=server.data_dir, demo_speed=200, start=False)
    server.start()
    assert server.get("/api/image", params={"task_id": finished, "delete": "false"}).status_code == 200
    for task_id in [running, *waiting]:
        server.wait_status(task_id, "done", timeout=60)
    tasks = {t["task_id"]: t for t in server.get("/api/tasks").json()}
    order = sorted([running, *waiting], key=lambda t: tasks[t]["compute_time"])
    assert order == [running, *waiting]
    assert tasks[running]["attempts"] == 1  # a graceful stop is not held against the task


def test_sigkill_of_the_server_loses_no_accepted_task(server_factory):
    server = server_factory(demo_speed=2)
    ids = [server.generate(f"task {i}", width=512, height=512, steps=4) for i in range(4)]
    server.wait_status(ids[0], "running")
    server.kill()
    server = server_factory(data_dir=server.data_dir, demo_speed=400)
    for task_id in ids:
        server.wait_status(task_id, "done", timeout=60)
    images = sorted(p.name for p in (server.data_dir / "images").iterdir())
    assert images == sorted(f"{t}.jpg" for t in ids)


def test_eta_is_sane_on_the_demo_engine(server_factory):
    import time

    server = server_factory(demo_speed=10)
    submitted = []
    for i in range(4):
        began = time.monotonic()
        answer = server.post("/api/generate", json={"prompt": f"eta {i}", "width": 512, "height": 512,
                                                    "steps": 4}).json()  # fmt: skip
        submitted.append((answer, began))
    for answer, began in submitted:
        server.wait_status(answer["task_id"], "done", timeout=60)
        actual = time.monotonic() - began
        assert answer["expected_time_seconds"] == pytest.approx(actual, rel=0.6, abs=0.3)
    # Each later task is promised for a later moment than the one before it.
    promised = [began + a["expected_time_seconds"] for a, began in submitted]
    assert all(later > earlier for earlier, later in itertools.pairwise(promised))
