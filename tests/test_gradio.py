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

import numpy as np
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


def test_model_dropdown_is_filled_from_the_server_and_its_choice_is_sent(client, gradio_app, shared_server):
    listed = shared_server.get("/api/ls").json()
    default = next(name for name, entry in listed.items() if entry["default"])
    # Filled when the app is built (and again when a page loads or the server address changes) ...
    [dropdown] = [c for c in requests.get(gradio_app + "/config", timeout=10).json()["components"]
                  if c.get("type") == "dropdown" and c["props"].get("label") == "Model"]  # fmt: skip
    assert [value for _, value in dropdown["props"]["choices"]] == list(listed)
    assert dropdown["props"]["value"] == default
    update = client.predict(shared_server.url, api_name="/models")
    assert [value for _, value in update["choices"]] == list(listed)
    assert update["value"] == default
    labels = dict((value, label) for label, value in update["choices"])
    assert listed["demo-slow"]["label"] in labels["demo-slow"] and "server default" in labels[default]

    # ... and the model chosen goes with each task, for those tasks only.
    gallery, summary = client.predict(*generate_args(shared_server.url, count=1), "demo-slow", api_name="/generate")
    [item] = gallery
    assert shared_server.status(image_path(item).stem)["model"] == "demo-slow"
    with Image.open(image_path(item)) as image:
        assert image.text["model"] == "demo-slow"
    assert ", on demo-slow, " in summary
    assert shared_server.get("/api/ps").json()["model"] == default
    with pytest.raises(AppError, match="model: Unknown model 'nope'"):
        client.predict(*generate_args(shared_server.url, count=1), "nope", api_name="/generate")


def test_model_dropdown_follows_the_server_address(client, server_factory):
    other = server_factory(demo_speed=100)
    other.post("/api/load", json={"model": "demo-fast"}).raise_for_status()
    update = client.predict(other.url, api_name="/models")
    assert update["value"] == "demo-fast"
    gallery, _ = client.predict(*generate_args(other.url, count=1), "", api_name="/generate")  # "": its default
    assert other.status(image_path(gallery[0]).stem)["model"] == "demo-fast"
    unreachable = client.predict(f"http://127.0.0.1:{free_port()}", api_name="/models")
    assert unreachable["choices"] == [] and unreachable["value"] is None


# -- input images ---------------------------------------------------------------------------------------------------


def a_picture(size: tuple[int, int]) -> Image.Image:
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(size)
    return Image.merge("RGB", (red, green, Image.new("L", size, 90)))


def test_an_input_image_and_a_mask_are_passed_through(client, shared_server, tmp_path):
    init = a_picture((192, 160))
    init.save(tmp_path / "init.png")
    mask = Image.new("L", init.size, 0)
    mask.paste(255, (0, 0, 96, 160))  # repaint the left half
    mask.save(tmp_path / "mask.png")
    image = gradio_client.handle_file(tmp_path / "init.png")
    mask_file = gradio_client.handle_file(tmp_path / "mask.png")

    gallery, summary = client.predict(*generate_args(shared_server.url, count=1), "", image, mask_file, 0.4, True,
                                      api_name="/generate")  # fmt: skip
    [item] = gallery
    with Image.open(image_path(item)) as made:
        assert made.size == (192, 160), "the size of the image"
        kept = np.asarray(made.convert("RGB"))[:, 120:]
        assert np.array_equal(kept, np.asarray(init)[:, 120:]), "outside the mask: the input image"
    assert "192×160, from the input image" in summary

    # An upscale: twice the size; the strength slider's value is not sent to a model that takes none.
    gallery, _ = client.predict(*generate_args(shared_server.url, count=1), "demo-upscale", image, None, 0.4, True,
                                api_name="/generate")  # fmt: skip
    with Image.open(image_path(gallery[0])) as made:
        assert made.size == (384, 320)
    # A size asked for: the image is brought to it.
    gallery, _ = client.predict(*generate_args(shared_server.url, count=1), "", image, None, 0.4, False,
                                api_name="/generate")  # fmt: skip
    with Image.open(image_path(gallery[0])) as made:
        assert made.size == (320, 256)

    with pytest.raises(AppError, match="init_image: The model demo-edit edits an image"):
        client.predict(*generate_args(shared_server.url, count=1), "demo-edit", None, None, 0.4, True,
                       api_name="/generate")  # fmt: skip
    with pytest.raises(AppError, match="add the image too"):
        client.predict(*generate_args(shared_server.url, count=1), "", None, mask_file, 0.4, True,
                       api_name="/generate")  # fmt: skip
