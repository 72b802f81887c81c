# ruff: noqa: E501, E701, W291, W293, B007 - the original README's client functions below are kept verbatim
"""The Python client (`mflux_client`) and its command line, against the real server on the demo engine.

Also: the original server's README client code and curl example, unchanged, against this server.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
import requests
from PIL import Image

from harness.server_process import wait_for
from mflux_client import (
    ImageNotReady,
    InvalidRequest,
    MfluxClient,
    QueueFull,
    ServerUnavailable,
    Submission,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TaskStatus,
    Unauthorized,
    WaitTimeout,
    next_poll_delay,
)

CLI = [sys.executable, "-m", "mflux_client.cli"]


@pytest.fixture
def client(shared_server):
    with MfluxClient(shared_server.url) as client:
        yield client


# -- the library ------------------------------------------------------------------------------------------


def test_submit_status_wait_image_round_trip(client):
    submission = client.submit("a red fox", width=320, height=200, steps=2, seed=7, format="PNG")
    assert isinstance(submission, Submission)
    assert (submission.seed, submission.width, submission.height, submission.steps) == (7, 320, 192, 2)
    assert submission.expected_time_seconds >= 0 and submission.task_length >= 0

    first = client.status(submission.task_id)
    assert isinstance(first, TaskStatus) and first.task_id == submission.task_id
    assert first.status in ("waiting", "running", "done")
    updates: list[TaskStatus] = []
    final = client.wait(submission.task_id, timeout=30, on_update=updates.append)
    assert final.status == "done" and final.is_final and final.wait_remaining == 0
    assert updates[-1] == final

    image = client.image(submission.task_id, delete=False)
    assert isinstance(image, Image.Image)
    assert (image.format, image.size) == ("PNG", (320, 192))
    data = client.image(submission.task_id, as_bytes=True)  # delete=True (default): fetched once more, then gone
    assert Image.open(BytesIO(data)).size == (320, 192)
    with pytest.raises(ImageNotReady) as gone:
        client.image(submission.task_id)
    assert gone.value.status_code == 404 and "already fetched" in gone.value.message
    assert gone.value.task_status == "done"


def test_generate_n_images_with_consecutive_seeds(client):
    images = client.generate("a castle", n=3, seed=41, width=256, height=128, steps=2, format="PNG")
    assert [image.size for image in images] == [(256, 128)] * 3
    assert [image.text["seed"] for image in images] == ["41", "42", "43"]  # the demo engine's PNG metadata
    assert len({image.tobytes() for image in images}) == 3

    drawn = client.generate("a castle", n=2, width=64, height=64, steps=1, format="PNG")  # server draws the seed
    first, second = (int(image.text["seed"]) for image in drawn)
    assert second == first + 1 or (first, second) == (2**32 - 1, 0)


def test_server_errors_become_typed_exceptions_with_the_servers_message(client, shared_server):
    with pytest.raises(TaskNotFound) as unknown:
        client.status("no-such-task")
    raw = requests.get(shared_server.url + "/api/status", params={"task_id": "no-such-task"}, timeout=10)
    assert unknown.value.status_code == 404
    assert unknown.value.message == raw.json()["message"]
    with pytest.raises(TaskNotFound):
        client.image("no-such-task")
    with pytest.raises(TaskNotFound):
        client.cancel("no-such-task")

    with pytest.raises(InvalidRequest) as invalid:
        client.submit("a red fox", width=5000)
    assert invalid.value.status_code == 422
    assert invalid.value.message.startswith("width: ")
    assert "width" in invalid.value.errors["json"]
    with pytest.raises(InvalidRequest, match="prompt"):
        client.submit("   ")

    with pytest.raises(TaskFailed) as failed:  # the demo engine raises on this marker
        client.generate("boom [demo-fault:raise]", n=2, width=64, height=64, steps=1)
    assert failed.value.error and failed.value.error in str(failed.value)
    assert failed.value.status.status == "failed"


def test_unreachable_server_raises_server_unavailable():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerUnavailable) as down:
        MfluxClient(f"http://127.0.0.1:{port}").info()
    assert down.value.status_code is None and "Connection refused" in down.value.message


def test_info_health_and_the_bearer_header(shared_server):
    sent: list[str | None] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, **_: sent.append(response.request.headers.get("Authorization")))
    keyed = MfluxClient(shared_server.url + "/", api_key="s3cret", session=session)
    assert keyed.info()["engine"] == "demo"
    health = keyed.health()
    assert health["ok"] is True and health["model_loaded"] is True
    MfluxClient(shared_server.url, session=session).info()
    assert sent == ["Bearer s3cret", "Bearer s3cret", None]


def test_api_key_for_the_library_and_the_command_line(server_factory, tmp_path):
    server = server_factory("--api-key", "s3cret", demo_speed=100, start=False).start(wait_ready=False)
    keyed = MfluxClient(server.url, api_key="s3cret")
    wait_for(lambda: keyed.health()["model_loaded"], 60, what="the engine to load")  # the fixture's probe has no key
    for client in (MfluxClient(server.url), MfluxClient(server.url, api_key="wrong")):
        with pytest.raises(Unauthorized) as refused:
            client.submit("a red fox", width=64, height=64, steps=1)
        assert refused.value.status_code == 401 and refused.value.message
    [image] = keyed.generate("a red fox", width=64, height=64, steps=1)
    assert image.size == (64, 64)

    command = ["a red fox", "-o", str(tmp_path / "k.png"), "--width", "64", "--height", "64", "--steps", "1"]
    assert run_cli(*command, "--server", server.url, "--api-key", "s3cret", "-q").returncode == 0
    refused = run_cli(*command, "--server", server.url)
    assert refused.returncode == 1 and "mflux-client: error:" in refused.stderr


def test_cancel_clear_queue_full_wait_timeout_and_task_listing(server_factory):
    server = server_factory("--max-waiting", "1", demo_speed=2)  # a 1024² 8-step task runs ~9 s: time to look
    client = MfluxClient(server.url)
    running = client.submit("a slow one", width=1024, height=1024, steps=8)
    server.wait_status(running.task_id, "running", timeout=20)
    waiting = client.submit("a waiting one", width=256, height=256, steps=2, priority=True)

    with pytest.raises(QueueFull) as full:
        client.submit("one too many")
    assert full.value.status_code == 429 and full.value.retry_after is not None and full.value.retry_after >= 0
    assert "queue is full" in full.value.message

    listed = client.tasks()
    assert [(t["task_id"], t["status"]) for t in listed] == [(running.task_id, "running"), (waiting.task_id, "waiting")]
    assert listed[1]["prompt"] == "a waiting one" and listed[1]["priority"] is True
    assert len(client.tasks(limit=1)) == 1

    with pytest.raises(WaitTimeout) as slow:
        client.wait(running.task_id, timeout=0.3)
    assert slow.value.last is not None and slow.value.last.status == "running"

    cancelled = client.cancel(waiting.task_id)
    assert cancelled["cancelled"] is True and cancelled["status"] == "cancelled"
    with pytest.raises(TaskCancelled) as ended:
        client.wait(waiting.task_id, timeout=10)
    assert ended.value.task_id == waiting.task_id
    assert client.cancel(waiting.task_id)["cancelled"] is False  # already over

    assert client.clear()["task_ids"] == [running.task_id]
    with pytest.raises(TaskCancelled):
        client.wait(running.task_id, timeout=20)  # stops at its next step


@pytest.mark.parametrize(
    ("status", "delay"),
    [
        (TaskStatus("t", "waiting", pos=3, wait_remaining=60.0), 5.0),
        (TaskStatus("t", "waiting", pos=0, wait_remaining=3.0), 1.0),
        (TaskStatus("t", "waiting", pos=0, wait_remaining=0.1), 0.2),
        (TaskStatus("t", "running", wait_remaining=30.0), 0.5),
        (TaskStatus("t", "running", wait_remaining=0.0), 0.1),
    ],
)
def test_polling_follows_the_forecast(status, delay):
    assert next_poll_delay(status) == pytest.approx(delay)


# -- the command line ---------------------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_cli_writes_numbered_files_of_the_requested_size(shared_server, tmp_path):
    done = run_cli("a lighthouse", "-o", str(tmp_path / "out.png"), "--width", "320", "--height", "256",
                   "--steps", "2", "--seed", "5", "--n", "2", "--server", shared_server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    paths = [tmp_path / "out-1.png", tmp_path / "out-2.png"]
    assert done.stdout.split() == [str(p) for p in paths]
    for path, seed in zip(paths, ("5", "6"), strict=True):
        with Image.open(path) as image:
            assert (image.format, image.size, image.text["seed"]) == ("PNG", (320, 256), seed)
    assert "2/2 seed 6" in done.stderr and "saved" in done.stderr  # the progress bars


def test_cli_console_script_names_files_from_a_pattern(shared_server, tmp_path):
    script = Path(sys.executable).parent / "mflux-client"
    command = [str(script)] if script.exists() else CLI
    done = subprocess.run(
        [*command, "dunes", "-o", str(tmp_path / "dune-{seed}-{n}.webp"), "--width", "128", "--height", "96",
         "--steps", "1", "--seed", "100", "--n", "2", "--quiet", "--server", shared_server.url],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "dune-100-1.webp"), str(tmp_path / "dune-101-2.webp")]
    for line in done.stdout.split():
        with Image.open(line) as image:
            assert (image.format, image.size) == ("WEBP", (128, 96))


def test_cli_reports_the_servers_message_for_an_invalid_request(shared_server, tmp_path):
    done = run_cli("a lighthouse", "-o", str(tmp_path / "x.jpg"), "--width", "5000", "--server", shared_server.url)
    assert done.returncode == 1
    assert "width: Must be between" in done.stderr
    assert not list(tmp_path.iterdir())


def test_cli_ctrl_c_cancels_its_tasks_on_the_server(server_factory, tmp_path):
    server = server_factory(demo_speed=2)  # a 1024² 8-step task takes ~9 s here
    stderr = bytearray()
    with subprocess.Popen(
        [*CLI, "slow", "-o", str(tmp_path / "x.jpg"), "--width", "1024", "--height", "1024", "--steps", "8",
         "--n", "2", "--server", server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        # A shell that ran us in the background may have ignored SIGINT; give the client Python's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as process:  # fmt: skip

        def read_stderr() -> None:
            while chunk := process.stderr.read1(4096):
                stderr.extend(chunk)

        reader = threading.Thread(target=read_stderr)
        reader.start()
        try:
            # The second bar is drawn once the second task is submitted and handed to the client's cleanup.
            wait_for(lambda: b"2/2 seed" in stderr, 20, what="the client to submit both tasks")
            process.send_signal(signal.SIGINT)
            assert process.wait(20) == 130, stderr.decode()
        finally:
            if process.poll() is None:
                process.kill()
            reader.join(10)
        assert process.stdout.read() == b""
    assert "cancelled 2 task(s) on the server" in stderr.decode()
    for task in server.get("/api/tasks").json():
        server.wait_status(task["task_id"], "cancelled", timeout=20)
    assert len(server.get("/api/tasks").json()) == 2


# -- the original server's README, unchanged ----------------------------------------------------------------


# fmt: off
def mflux_generate_client(mfluxendpoint, prompt, width=1280, height=720, steps=4, seed=None, format="JPEG", quality=85, priority=False):
    data = {
        "prompt": prompt,
        "height": height,
        "width": width,
        "steps": steps,
        "format": format,
        "quality": quality,
        "priority": priority
    }
    if seed is not None:
        data["seed"] = seed
    response = requests.post(mfluxendpoint + "/api/generate", json=data)
    # parse the response and get the task_id
    json = response.json()
    task_id = json["task_id"]
    return task_id
    
def mflux_status_ready(mfluxendpoint, task_id):
    response = requests.get(mfluxendpoint + "/api/status?task_id=" + task_id)
    if response.status_code == 200:
        status = response.json()["status"]
        if status == "done":
            return 0
        else:
            # read the waiting time
            waiting_time = response.json().get("wait_remaining", 1)
            if waiting_time < 1: waiting_time = 1
            return waiting_time
    else:
        return -1

def mflux_get_image(mfluxendpoint, task_id):
    response = requests.get(mfluxendpoint + "/api/image?task_id=" + task_id + "&base64=false&delete=true")
    if response.status_code == 200:
        return response.content
    else:
        return None

def generate_image(mfluxendpoint, prompt, width=1280, height=720, steps=4):
    startt = time.time()
    task_id = mflux_generate_client(mfluxendpoint, prompt, width=width, height=height, steps=steps)
    for i in range(10000):
        waiting_time = mflux_status_ready(mfluxendpoint, task_id)
        print("Waiting time: ", waiting_time, " seconds")
        if waiting_time == 0: break
        nextsleep = max(min(waiting_time / 4, 10), 1)
        time.sleep(nextsleep)
    imageb = mflux_get_image(mfluxendpoint, task_id)    
    stopt = time.time()
    print("Time taken: ", stopt - startt, " seconds")
    image = Image.open(BytesIO(imageb))
    return image
# fmt: on


def test_original_readme_python_client_works_unchanged(shared_server):
    url = shared_server.url
    task_id = mflux_generate_client(url, "A beautiful landscape", seed="1725311496")  # 1280x720, 4 steps, JPEG
    assert isinstance(task_id, str)
    wait_for(lambda: mflux_status_ready(url, task_id) == 0, 30, what="the README's status check to say done")
    image = Image.open(BytesIO(mflux_get_image(url, task_id)))
    assert (image.format, image.size) == ("JPEG", (1280, 720))
    assert mflux_get_image(url, task_id) is None  # fetched with delete=true: gone
    assert mflux_status_ready(url, "no-such-task") == -1

    image = generate_image(url, "A beautiful landscape", width=512, height=384, steps=2)
    assert image.size == (512, 384)


def test_original_readme_curl_example_body(shared_server, client):
    body = """{
  "prompt": "A beautiful landscape",
  "seed": "1725311496",
  "height": 1024,
  "width": 1024,
  "steps": 4,
  "format": "JPEG",
  "quality": 85,
  "priority": false
}"""
    response = requests.post(
        shared_server.url + "/api/generate",
        data=body,
        headers={"accept": "application/json", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {"task_id", "task_length", "expected_time_seconds"} <= set(answer)
    assert answer["seed"] == 1725311496  # the string seed was taken as the number it spells
    client.wait(answer["task_id"], timeout=30)
    assert client.image(answer["task_id"]).size == (1024, 1024)
