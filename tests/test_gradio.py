"""The Gradio app (clients/gradio/app.py): launched from its own environment, driven through gradio_client.

gradio pins pillow<13 and mflux needs >=13, so the app runs from `.venv-gradio` (made by scripts/test.sh, or:
`python3 -m venv .venv-gradio && .venv-gradio/bin/pip install "gradio>=5,<7" requests`), talking to a real
demo server over HTTP exactly as it would on another machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import requests
from PIL import Image

from harness.server_process import ROOT, wait_for

GRADIO_PYTHON = ROOT / ".venv-gradio" / "bin" / "python"
APP = ROOT / "clients" / "gradio" / "app.py"

pytestmark = pytest.mark.skipif(
    not GRADIO_PYTHON.exists(),
    reason='no .venv-gradio: python3 -m venv .venv-gradio && .venv-gradio/bin/pip install "gradio>=5,<7" requests',
)
gradio_client = pytest.importorskip("gradio_client")
AppError = gradio_client.exceptions.AppError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def gradio_app(shared_server, tmp_path_factory):
    """The app on a free loopback port, pointed at the shared demo server; its log in the pytest temp dir."""
    home = tmp_path_factory.mktemp("gradio")
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(home / "cache"),  # its copies of the images stay in the test's temp dir
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    url = f"http://127.0.0.1:{(port := free_port())}"
    with (home / "app.log").open("w") as log:
        process = subprocess.Popen(
            [str(GRADIO_PYTHON), str(APP), "--server", shared_server.url, "--port", str(port)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: process.poll() is not None or answers(url), 60, interval=0.1, what="the Gradio app")
        if process.poll() is not None:
            pytest.fail(f"the Gradio app exited ({process.returncode}):\n{(home / 'app.log').read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def client(gradio_app):
    return gradio_client.Client(gradio_app, verbose=False)


def generate_args(server_url: str, prompt: str = "a red fox", **overrides: object) -> tuple:
    """The /generate inputs in the app's order: 2 PNGs of 320x256, 2 steps, seeds 11 and 12, unless overridden."""
    params = {"width": 320, "height": 256, "steps": 2, "seed": 11, "random_seed": False, "count": 2,
              "image_format": "PNG"} | overrides  # fmt: skip
    return (prompt, *params.values(), server_url)


def image_path(item: dict) -> Path:
    image = item["image"]
    return Path(image["path"] if isinstance(image, dict) else image)


def test_generate_returns_the_servers_images_of_the_requested_size(client, shared_server):
    gallery, summary = client.predict(*generate_args(shared_server.url), api_name="/generate")
    assert [item["caption"] for item in gallery] == ["seed 11", "seed 12"]
    for item, seed in zip(gallery, ("11", "12"), strict=True):
        with Image.open(image_path(item)) as image:
            assert (image.format, image.size) == ("PNG", (320, 256))
            assert (image.text["seed"], image.text["prompt"], image.text["engine"]) == (seed, "a red fox", "demo")
        # The app names each file after its task: the server ran that task, and the app fetched its image.
        task_id = image_path(item).stem
        assert shared_server.status(task_id)["status"] == "done"
        assert shared_server.get("/api/image", params={"task_id": task_id}).status_code == 404  # fetched
    assert summary.startswith("2 image(s), 320×256, seed 11…12")


def test_server_and_task_errors_reach_the_user_as_gradio_errors(client, server_factory):
    small = server_factory("--max-side", "512", demo_speed=100)
    with pytest.raises(AppError, match="width: Must be between 64 and 512 pixels"):
        client.predict(*generate_args(small.url, width=1024, count=1), api_name="/generate")
    with pytest.raises(AppError, match="failed"):
        client.predict(*generate_args(small.url, prompt="boom [demo-fault:raise]", count=1), api_name="/generate")
    with pytest.raises(AppError, match="Cannot reach the mflux server"):
        client.predict(*generate_args(f"http://127.0.0.1:{free_port()}"), api_name="/generate")
    assert client.predict(small.url, api_name="/server_info").startswith("Connected: demo engine")


def test_cancel_button_cancels_the_sessions_tasks_on_the_server(client, server_factory):
    slow = server_factory(demo_speed=2)  # a 1024² 8-step task takes ~9 s here
    job = client.submit(*generate_args(slow.url, width=1024, height=1024, steps=8), api_name="/generate")

    def progress_line() -> str:
        units = job.status().progress_data or []
        return (units[-1].desc or "") if units else ""

    # "Image 1/2: …" is reported once both tasks are submitted and the app follows them (and can cancel them).
    wait_for(lambda: progress_line().startswith("Image "), 30, interval=0.1, what="the app to report progress")
    tasks = slow.get("/api/tasks").json()
    assert len(tasks) == 2
    assert client.predict(api_name="/cancel") == "Cancelled 2 task(s)."
    assert job.result(timeout=30) == ([], "Cancelled.")
    assert [slow.status(task["task_id"])["status"] for task in tasks] == ["cancelled", "cancelled"]
