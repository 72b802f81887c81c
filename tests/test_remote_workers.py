"""Several machines behind one server (issue 13), with a real redis-server and real mflux-server-worker processes
on loopback: tasks shared between the server's own worker and remote ones, a worker lost (killed, paused) and
its task run again once elsewhere, a paused worker that comes back unable to overwrite a result, Redis restarted
under load, two workers of one name, a worker of another protocol, a model that fails on one worker only, a
server restarted while a remote worker renders, and input images travelling through Redis.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import signal

import pytest
import redis
from PIL import Image

from harness.remote import REDIS_MISSING, RedisServer, RunningWorker
from harness.server_process import wait_for
from worker import broker

LOST_WITHIN = broker.LOST_AFTER_SECONDS + 2 * broker.HEARTBEAT_SECONDS + 3  # the documented bound, and slack
SLOW = {"width": 1024, "height": 1024, "steps": 12}  # ~3 s at demo speed 8


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip(REDIS_MISSING)
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def workers(redis_server):
    started: list[RunningWorker] = []

    def start(name: str, *args: str, demo_speed: float = 8.0, env: dict | None = None) -> RunningWorker:
        worker = RunningWorker(redis_server.url, name, args, demo_speed=demo_speed, env=env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def generate(server, prompt: str, **params) -> str:
    return server.generate(prompt, **{"width": 256, "height": 256, "steps": 2, **params})


def task(server, task_id: str) -> dict:
    return next(t for t in server.get("/api/tasks", params={"limit": 1000}).json() if t["task_id"] == task_id)


def workers_in(server, *states: str) -> dict[str, dict]:
    return {w["name"]: w for w in server.get("/api/workers").json() if w["state"] in states}


def ready_workers(server) -> dict[str, dict]:
    return workers_in(server, "ready", "busy", "loading")


def wait_ready(server, *names: str) -> None:
    wait_for(lambda: set(names) <= set(ready_workers(server)), 30, what=f"workers {names} to be ready")


def test_tasks_are_shared_between_the_local_and_a_remote_worker(server_factory, redis_server, workers):
    server = server_factory("--broker", redis_server.url, demo_speed=8)
    workers("studio")
    wait_ready(server, "local", "studio")
    ids = [generate(server, f"task {i}", width=512, height=512, steps=6) for i in range(6)]
    for task_id in ids:
        assert server.wait_status(task_id, timeout=60)["status"] == "done"
    ran_on = {task(server, task_id)["worker"] for task_id in ids}
    assert ran_on == {"local", "studio"}  # both took some
    remote = next(task_id for task_id in ids if task(server, task_id)["worker"] == "studio")
    image = Image.open(io.BytesIO(server.get("/api/image", params={"task_id": remote}).content))
    assert image.size == (512, 512)  # the remote worker's image came back through Redis, whole
    listed = {w["name"]: w for w in server.get("/api/workers").json()}
    assert listed["studio"]["remote"] and listed["studio"]["tasks_done"] >= 1 and listed["studio"]["last_heartbeat"]
    assert not listed["local"]["remote"] and listed["local"]["warm"] == ["demo"]


def test_an_api_only_server_runs_everything_on_remote_workers(server_factory, redis_server, workers):
    server = server_factory("--broker", redis_server.url, "--no-local-worker", demo_speed=8, start=False)
    server.start(wait_ready=False)
    refused = server.post("/api/generate", json={"prompt": "nobody to run it"})
    assert refused.status_code == 503 and "mflux-server-worker" in refused.json()["message"]
    assert server.get("/api/health").status_code == 503
    workers("only")
    wait_ready(server, "only")
    assert server.get("/api/health").json()["ok"]
    done = server.wait_status(generate(server, "on the remote"), timeout=60)
    assert done["status"] == "done" and done["worker"] == "only"


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_lost_worker_is_noticed_and_its_task_runs_again_elsewhere(server_factory, redis_server, workers, how):
    server = server_factory("--broker", redis_server.url, demo_speed=8)
    remote = workers("laptop")
    wait_ready(server, "local", "laptop")
    blocker = generate(server, "keeps local busy", **SLOW)  # the local worker takes it
    wait_for(lambda: task(server, blocker)["worker"] == "local", 20, what="the blocker on local")
    doomed = generate(server, "on the laptop", **SLOW)
    wait_for(lambda: (t := task(server, doomed))["worker"] == "laptop" and (t["progress"] or {}).get("step", 0) >= 1,
             20, what="the laptop past its first step")  # fmt: skip
    remote.signal(getattr(signal, how))
    lost = wait_for(lambda: workers_in(server, "lost").get("laptop"), LOST_WITHIN, what="the laptop declared lost")
    assert "no heartbeat" in lost["error"]
    again = server.wait_status(doomed, timeout=60)
    assert again["status"] == "done" and again["worker"] == "local"
    assert task(server, doomed)["attempts"] == 2  # charged once, as after a crash
    if how == "SIGSTOP":  # back from a closed lid: a new session; its late image cannot replace the result
        image_before = server.get("/api/image", params={"task_id": doomed, "delete": "false"}).content
        remote.signal(signal.SIGCONT)
        wait_ready(server, "laptop")
        assert server.get("/api/image", params={"task_id": doomed, "delete": "false"}).content == image_before
        assert server.wait_status(generate(server, "welcome back"), timeout=60)["status"] == "done"
        assert "declared this worker lost" in remote.log()


def test_redis_restarted_under_load_loses_nothing_and_runs_nothing_twice(server_factory, redis_server, workers):
    server = server_factory("--broker", redis_server.url, demo_speed=8)
    workers("studio")
    wait_ready(server, "local", "studio")
    first = [generate(server, f"before {i}", width=512, height=512, steps=8) for i in range(4)]
    redis_server.restart()  # no persistence: everything in it is gone
    during = [generate(server, f"during {i}") for i in range(3)]  # the API keeps accepting
    assert server.status(during[0])["status"] in ("waiting", "running", "done")
    wait_ready(server, "studio")  # it joins again once Redis answers
    after = [generate(server, f"after {i}", width=512, height=512, steps=4) for i in range(4)]
    for task_id in first + during + after:
        assert server.wait_status(task_id, timeout=90)["status"] == "done", task_id
    text = "\n".join(server.lines)
    for task_id in first + during + after:
        assert len(re.findall(rf"task {task_id} done", text)) == 1, task_id  # once, not twice
    assert {task(server, t)["worker"] for t in after} <= {"local", "studio"}


def test_two_workers_of_one_name_and_a_worker_of_another_protocol_are_refused(server_factory, redis_server, workers):
    server = server_factory("--broker", redis_server.url, demo_speed=8)
    first = workers("twin")
    wait_ready(server, "twin")
    second = workers("twin")
    assert second.exited(30) == 3 and "already running" in second.log()
    assert first.process.poll() is None and "twin" in ready_workers(server)
    fake = redis.Redis.from_url(redis_server.url)
    fake.xadd(broker.EVENTS, {"worker": "old-mac", "session": "s", "protocol": "999", "message": "{}"})
    refused = wait_for(lambda: workers_in(server, "refused").get("old-mac"), 10, what="the old worker listed")
    assert refused["state"] == "refused" and "protocol 999" in refused["error"]
    assert server.wait_status(generate(server, "still fine"), timeout=60)["status"] == "done"


def test_a_model_that_fails_on_one_worker_runs_on_another(server_factory, redis_server, workers):
    server = server_factory("--broker", redis_server.url, demo_speed=8)
    workers("broken", env={"MFLUX_DEMO_FAULT": "load-fail:demo-slow"})
    wait_ready(server, "local", "broken")
    ids = [generate(server, f"slow {i}", model="demo-slow") for i in range(4)]
    for task_id in ids:
        assert server.wait_status(task_id, timeout=60)["status"] == "done"
    assert {task(server, task_id)["worker"] for task_id in ids} == {"local"}
    assert "broken" in ready_workers(server)  # the worker is fine for other models


def test_a_server_restart_while_a_remote_worker_renders_runs_its_task_once(server_factory, redis_server, workers,
                                                                           tmp_path):  # fmt: skip
    data = tmp_path / "kept"
    server = server_factory("--broker", redis_server.url, "--no-local-worker", data_dir=data, demo_speed=8,
                            start=False).start(wait_ready=False)  # fmt: skip
    workers("studio")
    wait_ready(server, "studio")
    long = generate(server, "across the restart", **SLOW)
    wait_for(lambda: (task(server, long)["progress"] or {}).get("step", 0) >= 1, 20, what="the task under way")
    server.stop()
    again = server_factory("--broker", redis_server.url, "--no-local-worker", data_dir=data, demo_speed=8,
                           start=False).start(wait_ready=False)  # fmt: skip
    assert again.wait_status(long, timeout=60)["status"] == "done"
    assert task(again, long)["attempts"] == 1  # it was not run again
    assert "done" in again.get("/api/status", params={"task_id": long}).json()["status"]


def test_input_images_travel_to_a_remote_worker(server_factory, redis_server, workers):
    server = server_factory("--broker", redis_server.url, "--no-local-worker", demo_speed=8, start=False)
    server.start(wait_ready=False)
    workers("studio")
    wait_ready(server, "studio")
    init = Image.new("RGB", (256, 128), (200, 40, 40))
    mask = Image.new("L", (256, 128), 0)
    mask.paste(255, (0, 0, 128, 128))

    def b64(image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    body = {"prompt": "x", "init_image": b64(init), "mask_image": b64(mask), "image_strength": 0.0, "mask_blur": 0,
            "format": "PNG"}  # fmt: skip
    task_id = server.post("/api/generate", json=body).json()["task_id"]
    assert server.wait_status(task_id, timeout=60)["worker"] == "studio"
    made = Image.open(io.BytesIO(server.get("/api/image", params={"task_id": task_id}).content)).convert("RGB")
    assert made.getpixel((200, 64)) == (200, 40, 40) and made.getpixel((20, 64)) != (200, 40, 40)
    assert json.loads(json.dumps(ready_workers(server)["studio"]))["tasks_done"] == 1
