"""The Python client (`mflux_client`) and its command line, against the real server on the demo engine.

Also: the original server's README curl example, unchanged, against this server. (The README's Python functions,
and the original's own clients, are run from their sources in tests/test_original_clients.py.)
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from harness.server_process import wait_for
from mflux_client import (
    ImageNotReady,
    InvalidRequest,
    LoadedModel,
    MfluxClient,
    ModelEntry,
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


# -- models chosen per task -----------------------------------------------------------------------------------


def test_models_are_typed_entries_of_the_servers_list(client, shared_server):
    listed = shared_server.get("/api/ls").json()
    models = client.models()
    demo_models = ["demo", "demo-fast", "demo-slow", "demo-edit", "demo-upscale"]
    assert [model.name for model in models] == list(listed) == demo_models
    assert all(isinstance(model, ModelEntry) for model in models)
    demo = models[0]
    assert (demo.label, demo.kind, demo.default_steps) == (listed["demo"]["label"], "text-to-image", 4)
    assert (demo.default, demo.demo, demo.offered, demo.needs_image) == (True, True, True, False)
    assert (demo.default_guidance, demo.guidance_adjustable, demo.size_step) == (3.5, True, 16)
    assert demo.raw == listed["demo"]
    assert sum(model.default for model in models) == 1
    assert all(model.switch_seconds == 0 for model in models if model.loaded)
    assert {model.name for model in client.models(all=True)} >= set(listed)


def test_submit_and_generate_take_a_model(client):
    submission = client.submit("a slow fox", model="demo-slow", width=64, height=64, steps=1)
    assert submission.model == "demo-slow"
    final = client.wait(submission.task_id, timeout=30)
    assert final.model == "demo-slow" and final.loading_model is None

    seen: list[TaskStatus] = []
    [image] = client.generate("a fast fox", model="demo-fast", quantize=8, width=64, height=64, steps=1,
                              format="PNG", on_update=seen.append)  # fmt: skip
    assert image.text["model"] == "demo-fast@q8"  # the demo engine's PNG metadata: the variant
    assert {status.model for status in seen} == {"demo-fast@q8"}
    assert client.info()["model"] == "demo", "asking for a model does not change the server's default"

    with pytest.raises(InvalidRequest) as unknown:
        client.submit("a red fox", model="no-such-model")
    assert unknown.value.message.startswith("model: Unknown model 'no-such-model'")
    assert "demo-fast" in unknown.value.message


def test_loras_and_load_model(server_factory, tmp_path):
    library = tmp_path / "loras"
    library.mkdir()
    (library / "ghibli.safetensors").write_bytes(b"")  # the demo engine only needs the name to exist
    server = server_factory("--lora-dir", str(library), demo_speed=100)
    client = MfluxClient(server.url)
    small = {"width": 64, "height": 64, "steps": 1}
    assert client.submit("a fox", model="demo-fast", loras=[("ghibli", 0.8)], **small).model == "demo-fast+ghibli:0.8"
    assert client.submit("a fox", loras=["ghibli"], **small).model == "demo+ghibli:1"
    assert client.submit("a fox", loras=[{"name": "ghibli", "scale": 0.5}], **small).model == "demo+ghibli:0.5"
    with pytest.raises(InvalidRequest, match="No LoRA named 'nope'"):
        client.submit("a fox", loras=["nope"], **small)

    loaded = client.load_model("demo-slow")
    assert loaded == LoadedModel(model="demo-slow", variant="demo-slow", quantize=None, default_steps=4, loaded=True)
    assert server.get("/api/ps").json()["model"] == "demo-slow"
    assert [model.name for model in client.models() if model.default] == ["demo-slow"]
    assert client.submit("a fox", **small).model == "demo-slow"  # tasks naming none now run on it
    assert client.load_model("demo", quantize=8).variant == "demo@q8"
    with pytest.raises(InvalidRequest, match="Unknown model 'nope'"):
        client.load_model("nope")


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


def test_cli_lists_models_and_generates_on_the_one_asked_for(shared_server, tmp_path):
    listed = run_cli("--list-models", "--server", shared_server.url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line[2:].split()[0] for line in lines] == list(shared_server.get("/api/ls").json())
    assert [line[0] for line in lines] == ["*"] + [" "] * (len(lines) - 1)  # the default is marked
    kinds = {line[2:].split()[0]: line[2:].split()[1] for line in lines}
    assert (kinds["demo"], kinds["demo-edit"], kinds["demo-upscale"]) == ("text-to-image", "edit", "upscale")
    assert "text-to-image" in lines[1] and "4 steps" in lines[1] and "(fast)" in lines[1]

    out = tmp_path / "slow.png"
    done = run_cli("a fox", "-o", str(out), "--model", "demo-slow", "--width", "64", "--height", "64",
                   "--steps", "1", "--server", shared_server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Image.open(out) as image:
        assert image.text["model"] == "demo-slow"

    unknown = run_cli("a fox", "-o", str(tmp_path / "x.png"), "--model", "nope", "--server", shared_server.url)
    assert unknown.returncode == 1 and "model: Unknown model 'nope'" in unknown.stderr
    missing = run_cli("--server", shared_server.url)
    assert missing.returncode == 2 and "the prompt is required" in missing.stderr


def test_cli_bar_says_when_the_model_is_being_loaded(server_factory, tmp_path):
    server = server_factory(demo_speed=1)  # loading demo-slow takes 2.5 s here
    done = run_cli("a fox", "-o", str(tmp_path / "fox.jpg"), "--model", "demo-slow", "--width", "64", "--height",
                   "64", "--steps", "1", "--server", server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "loading demo-slow, ETA" in done.stderr


# -- the original server's README, unchanged ----------------------------------------------------------------


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


# -- input images -------------------------------------------------------------------------------------------------

CAPTION_ROWS = 43  # the demo engine writes what it is into the top rows of every picture


def a_picture(size: tuple[int, int], shade: int = 0) -> Image.Image:
    """A picture with structure everywhere: a gradient, a disc, a band."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(size)
    image = Image.merge("RGB", (red, green, Image.new("L", size, 70 + shade)))
    width, height = size
    ImageDraw.Draw(image).ellipse((width // 3, height // 3, width // 2, height // 2), fill=(240, 210, 20))
    return image


def left_half_mask(size: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((0, 0, size[0] // 2 - 1, size[1]), fill=255)
    return mask


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_submit_and_generate_take_an_init_image_a_mask_and_a_strength(client, tmp_path):
    init = a_picture((256, 192))
    path = tmp_path / "init.png"
    init.save(path)

    # img2img: the demo keeps `image_strength` of the init image, the rest is its own picture of the same seed.
    plain = client.generate("a fox in a field", seed=5, width=256, height=192, steps=2, format="PNG")[0]
    [kept] = client.generate("a fox in a field", seed=5, steps=2, format="PNG", init_image=path, image_strength=0.5)
    assert kept.size == (256, 192), "without width and height: the init image's size"
    expected = (as_array(plain) + as_array(init)) / 2
    assert np.abs(as_array(kept) - expected)[CAPTION_ROWS:].max() <= 1

    # A mask (here a PIL image; the init image as bytes): outside it the result is the init image, exactly.
    submission = client.submit("a fox, repainted on the left", steps=2, format="PNG",
                               init_image=path.read_bytes(), mask=left_half_mask(init.size), mask_blur=0)  # fmt: skip
    assert (submission.width, submission.height) == (256, 192)
    client.wait(submission.task_id, timeout=30)
    masked = as_array(client.image(submission.task_id))
    assert np.array_equal(masked[:, 128:], as_array(init)[:, 128:])
    assert np.abs(masked[CAPTION_ROWS:, :128] - as_array(init)[CAPTION_ROWS:, :128]).mean() > 20

    # Several tasks from one image (read once), and a size asked for: the image is cropped to it.
    images = client.generate("two foxes", n=2, seed=9, init_image=init, width=128, height=128, resize="crop",
                             steps=1, format="PNG")  # fmt: skip
    assert [image.size for image in images] == [(128, 128)] * 2
    assert [image.text["seed"] for image in images] == ["9", "10"]


def test_edit_references_and_upscale_through_the_client(client):
    first, second = a_picture((192, 128)), a_picture((64, 64), shade=120)
    [edited] = client.generate("the two together", model="demo-edit", init_image=first, init_images=[second],
                               steps=1, format="PNG")  # fmt: skip
    assert edited.size == (192, 128) and edited.text["model"] == "demo-edit"
    [bigger] = client.generate("sharper", model="demo-upscale", init_image=first, format="PNG")
    assert bigger.size == (384, 256)
    assert np.abs(as_array(bigger.resize(first.size)) - as_array(first))[CAPTION_ROWS:].mean() < 12


def test_bad_input_images_are_refused_naming_the_field(client):
    with pytest.raises(InvalidRequest) as garbage:
        client.submit("a fox", init_image=b"not an image")
    assert garbage.value.message.startswith("init_image: ")
    with pytest.raises(InvalidRequest) as strength:
        client.submit("a fox", init_image=a_picture((64, 64)), image_strength=1.5)
    assert strength.value.message.startswith("image_strength: ")
    with pytest.raises(InvalidRequest) as alone:
        client.submit("a fox", mask=left_half_mask((64, 64)))
    assert alone.value.message.startswith("mask_image: ")
    with pytest.raises(InvalidRequest) as nothing_to_edit:
        client.generate("a fox", model="demo-edit")
    assert nothing_to_edit.value.message.startswith("init_image: The model demo-edit edits an image")
    with pytest.raises(TypeError, match="a path, bytes or a PIL image"):
        client.submit("a fox", init_image=42)


def test_cli_image_mask_and_strength(shared_server, tmp_path):
    init, mask = a_picture((160, 128)), left_half_mask((160, 128))
    init.save(tmp_path / "in.png")
    mask.save(tmp_path / "mask.png")
    common = ["--steps", "1", "-q", "--server", shared_server.url]

    done = run_cli("a fox", "-o", str(tmp_path / "out.png"), "--image", str(tmp_path / "in.png"), "--mask",
                   str(tmp_path / "mask.png"), "--strength", "0.7", *common)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (160, 128)
        assert np.array_equal(as_array(out)[:, 104:], as_array(init)[:, 104:]), "kept outside the (feathered) mask"

    edit = run_cli("both", "-o", str(tmp_path / "edit.png"), "--model", "demo-edit", "--image",
                   str(tmp_path / "in.png"), "--image", str(tmp_path / "mask.png"), *common)  # fmt: skip
    assert edit.returncode == 0, edit.stderr
    with Image.open(tmp_path / "edit.png") as out:
        assert (out.size, out.text["model"]) == ((160, 128), "demo-edit")

    upscale = run_cli("up", "-o", str(tmp_path / "up.png"), "--model", "demo-upscale", "--image",
                      str(tmp_path / "in.png"), *common)  # fmt: skip
    assert upscale.returncode == 0, upscale.stderr
    assert Image.open(tmp_path / "up.png").size == (320, 256)

    refused = run_cli("a fox", "-o", str(tmp_path / "x.png"), "--model", "demo-upscale", "--image",
                      str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), *common)  # fmt: skip
    assert refused.returncode == 1 and "mask_image: The model demo-upscale upscales the whole image" in refused.stderr
    assert run_cli("a fox", "--strength", "0.5", *common).returncode == 2  # no --image to keep any of
    missing = run_cli("a fox", "--image", str(tmp_path / "nope.png"), *common)
    assert missing.returncode == 2 and "no such image file" in missing.stderr
    assert not (tmp_path / "x.png").exists()
