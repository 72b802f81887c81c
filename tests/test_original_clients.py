"""The original mflux-server's own clients, at its latest public revision, run unchanged against this server.

They are third-party code (Apache-2.0, by the original's author), like the `openai` package: loaded at test time
from the reference directory (`$MFLUX_ORIGINAL_REFERENCE`, default /work/shared/reference), never copied into the
project. Each test skips, saying so, when its client is not there.

- its web UI (web-ui-index.html), opened from a file in headless Chromium;
- its Python client (python-mflux_client.py, urllib), imported from its path;
- the Python functions of its README, taken from the README's text and exec'd;
- the generate function of its Gradio UI (gradio-mflux-gradio-ui.py), run in the Gradio environment.

What they must get from this server beyond the happy path: a task that was cancelled or failed must make them
stop. They all treat any HTTP 200 from /api/status as "not done yet" and poll on, so the server answers 410 for
such a task, which each of them takes as the end.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from harness.server_process import ROOT, wait_for

REFERENCE = Path(os.environ.get("MFLUX_ORIGINAL_REFERENCE", "/work/shared/reference"))
CLIENTS = REFERENCE / "original-clients"
WEB_UI = CLIENTS / "web-ui-index.html"
PYTHON_CLIENT = CLIENTS / "python-mflux_client.py"
GRADIO_UI = CLIENTS / "gradio-mflux-gradio-ui.py"
README = REFERENCE / "original-mflux-server-README.txt"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
GRADIO_PYTHON = ROOT / ".venv-gradio" / "bin" / "python"


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"the original's client is not at {path} (set MFLUX_ORIGINAL_REFERENCE)")
    return path


def block_the_engine(server) -> str:
    """A task that keeps the engine busy for seconds (1024², 8 steps), so that later tasks wait; it is running."""
    task_id = server.generate("a slow blocker", width=1024, height=1024, steps=8)
    server.wait_status(task_id, "running", timeout=20)
    return task_id


def waiting_task(server, prompt: str) -> dict:
    """The waiting task with this prompt, once a client has submitted it."""
    return wait_for(
        lambda: next((t for t in server.get("/api/tasks").json() if t["prompt"] == prompt), None),
        30,
        what=f"a task with the prompt {prompt!r}",
    )


# -- its web UI ------------------------------------------------------------------------------------------------

# Which intervals are running: the UI polls /api/status with setInterval and stops by clearInterval.
TRACK_INTERVALS_JS = """(() => {
  const set = window.setInterval.bind(window), clear = window.clearInterval.bind(window);
  window.__intervals = new Set();
  window.setInterval = (...args) => { const id = set(...args); window.__intervals.add(id); return id; };
  window.clearInterval = (id) => { window.__intervals.delete(id); return clear(id); };
})();"""


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium`")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def original_ui(browser):
    """Open the original web UI from its file with localStorage['mflux-server'] naming `server`, as a user who
    typed the address into its field once would have it; returns the page and the page errors it raised."""
    from playwright.sync_api import expect

    contexts = []

    def open_(server):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        context.add_init_script(f"localStorage.setItem('mflux-server', {json.dumps(server.url)});")
        context.add_init_script(TRACK_INTERVALS_JS)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(needs(WEB_UI).as_uri())
        expect(page.locator("#mflux-server")).to_have_value(server.url)
        return page, errors

    yield open_
    for context in contexts:
        context.close()


def test_original_web_ui_lists_models_switches_and_generates(original_ui, server_factory, tmp_path):
    from playwright.sync_api import expect

    server = server_factory(demo_speed=5)
    page, errors = original_ui(server)

    # The model list fills from /api/ls; /api/ps selects the default and sets its steps.
    select = page.locator("#model-select")
    names = list(server.get("/api/ls").json())
    page.wait_for_function("(n) => document.querySelectorAll('#model-select option').length === n", arg=len(names))
    assert page.evaluate("() => [...document.querySelectorAll('#model-select option')].map(o => o.value)") == names
    expect(select).to_have_value("demo")
    expect(page.locator("#steps")).to_have_value(str(server.get("/api/ps").json()["default_steps"]))

    # Choosing another model loads it (POST /api/load): the server's default changes.
    with page.expect_response(lambda r: r.url.endswith("/api/load")) as loaded:
        select.select_option("demo-slow")
    assert loaded.value.status == 200 and loaded.value.json()["model"] == "demo-slow"
    settings = server.get("/api/ps").json()
    assert (settings["model"], settings["loaded"]) == ("demo-slow", ["demo-slow"])
    expect(select).to_have_value("demo-slow")

    # Generating: the image appears, rendered by the chosen model.
    page.locator("#prompt").fill("a lighthouse from the original UI")
    with page.expect_response(lambda r: r.url.endswith("/api/generate")) as submitted:
        page.locator("#generate-button").click()
    task_id = submitted.value.json()["task_id"]
    image = page.locator("#image-container img")
    expect(image).to_have_count(1)
    page.wait_for_function("() => document.querySelector('#image-container img').naturalWidth > 0")
    assert page.evaluate("() => document.querySelector('#image-container img').naturalWidth") == 512
    expect(page.locator("#status")).to_have_value("All images generated.")
    assert server.status(task_id)["model"] == "demo-slow"
    server.wait_for_log(rf"task {task_id} running on demo-slow ")
    page.screenshot(path=tmp_path / "original-web-ui.png", full_page=True)
    assert page.evaluate("window.__intervals.size") == 0, "its poller stopped once the image was there"
    assert errors == []


def test_original_web_ui_stops_polling_a_cancelled_or_failed_task(original_ui, server_factory):
    from playwright.sync_api import expect

    server = server_factory(demo_speed=2)
    page, errors = original_ui(server)
    page.wait_for_function("() => document.querySelectorAll('#model-select option').length > 0")
    statuses: list[int] = []
    page.on("response", lambda r: "/api/status?" in r.url and statuses.append(r.status))

    block_the_engine(server)
    prompt = "a task that will be cleared"
    page.locator("#prompt").fill(prompt)
    page.locator("#generate-button").click()
    # It polls (every second) while its task waits behind the running one ...
    expect(page.locator("#status")).to_have_value(re.compile("Status: waiting"))
    assert page.evaluate("window.__intervals.size") == 1
    task_id = waiting_task(server, prompt)["task_id"]
    server.get("/api/clear").raise_for_status()  # the original's clients call this, the new web UI's "Clear"
    # ... and stops once the task is cancelled, instead of showing "waiting" forever.
    expect(page.locator("#status")).to_have_value("Failed to get status.")
    page.wait_for_function("() => window.__intervals.size === 0")
    assert server.status(task_id)["status"] == "cancelled"
    assert statuses[-1] == 410 and set(statuses[:-1]) == {200}

    # A task that fails ends its poller just the same.
    page.locator("#prompt").fill("a broken lighthouse [demo-fault:raise]")
    with page.expect_response(lambda r: r.url.endswith("/api/generate")) as submitted:
        page.locator("#generate-button").click()
    failed_id = submitted.value.json()["task_id"]
    expect(page.locator("#status")).not_to_have_value("Failed to get status.")
    expect(page.locator("#status")).to_have_value("Failed to get status.")
    page.wait_for_function("() => window.__intervals.size === 0")
    assert server.status(failed_id)["status"] == "failed"
    expect(page.locator("#image-container img")).to_have_count(0)
    assert errors == []


def test_original_web_ui_uploads_an_init_image_and_the_server_uses_it(original_ui, server_factory, tmp_path):
    """Its "Upload Init Image" sends the picture as `init_image` (base64, no data: prefix): the task keeps it with
    its inputs while it waits, and the demo's result is 40% of it (the default image_strength), as img2img."""
    from playwright.sync_api import expect

    server = server_factory(demo_speed=2)  # the blocker below runs ~9 s: time to see the task wait with its input
    page, errors = original_ui(server)
    page.wait_for_function("() => document.querySelectorAll('#model-select option').length > 0")
    gradient = Image.linear_gradient("L")
    upload = Image.merge("RGB", (gradient.resize((384, 256)), gradient.rotate(90).resize((384, 256)),
                                 Image.new("L", (384, 256), 200)))  # fmt: skip
    upload.save(tmp_path / "photo.png")
    page.locator("#init-image").set_input_files(tmp_path / "photo.png")
    expect(page.locator("#init-image-name")).to_have_text("photo.png")
    page.locator("#seed").fill("1234")
    page.locator("#prompt").fill("a lighthouse from an uploaded photo")
    images: list[bytes] = []  # the image it fetched (with delete=true: the server forgets it), as it was answered

    def keep_image(route) -> None:
        answer = route.fetch()
        images.append(answer.body())
        route.fulfill(response=answer)

    page.route("**/api/image?*", keep_image)

    blocker = block_the_engine(server)
    with page.expect_response(lambda r: r.url.endswith("/api/generate")) as answered:
        page.locator("#generate-button").click()
    body = answered.value.request.post_data_json
    task_id = answered.value.json()["task_id"]
    stored = server.data_dir / "inputs" / task_id
    assert sorted(path.name for path in stored.iterdir()) == ["init.png"], "it waits with its input image"
    assert server.status(task_id)["status"] == "waiting"
    assert not body["init_image"].startswith("data:")
    with Image.open(io.BytesIO(base64.b64decode(body["init_image"]))) as sent:
        assert sent.size == (384, 256)
    server.get("/api/cancel", params={"task_id": blocker}).raise_for_status()

    page.wait_for_function("() => document.querySelector('#image-container img')?.naturalWidth > 0", timeout=30_000)
    expect(page.locator("#status")).to_have_value("All images generated.")
    assert not stored.exists(), "the inputs go once the task is done"
    [data] = images
    with Image.open(io.BytesIO(data)) as shown:
        made = np.asarray(shown.convert("RGB"), dtype=np.float32)
    # The same task without the image, from the API: the demo's own picture for this prompt and seed.
    plain_id = server.generate(body["prompt"], seed=1234, width=body["width"], height=body["height"],
                               steps=body["steps"], guidance=body["guidance"], format="PNG")  # fmt: skip
    server.wait_status(plain_id, "done", timeout=30)
    with Image.open(io.BytesIO(server.get("/api/image", params={"task_id": plain_id}).content)) as plain_image:
        plain = np.asarray(plain_image.convert("RGB"), dtype=np.float32)
    start = np.asarray(upload.resize(plain_image.size, Image.Resampling.LANCZOS), dtype=np.float32)
    below_caption = slice(43, None)  # the demo writes what it is into its top rows
    expected = 0.6 * plain + 0.4 * start
    assert np.abs(made - expected)[below_caption].mean() < 3, "40% of the uploaded image, 60% the demo's picture"
    assert np.abs(made - plain)[below_caption].mean() > 15, "not the picture it makes without the image"
    assert errors == []


# -- its Python client (urllib) ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def original_client():
    spec = importlib.util.spec_from_file_location("original_mflux_client", needs(PYTHON_CLIENT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_original_python_client_writes_a_jpeg(original_client, shared_server, tmp_path):
    out = tmp_path / "output.jpg"
    assert original_client.generate_one_image(shared_server.url, "A beautiful landscape", str(out)) == str(out)
    with Image.open(out) as image:
        assert (image.format, image.size) == ("JPEG", (1024, 1024))


def test_original_python_client_stops_on_a_cancelled_task(original_client, server_factory, tmp_path):
    server = server_factory(demo_speed=2)
    block_the_engine(server)
    prompt = "a landscape nobody will see"
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            original_client.generate_one_image(server.url, prompt, str(tmp_path / "never.jpg"))
        except BaseException as error:  # what ends its loop is the point of the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    task_id = waiting_task(server, prompt)["task_id"]
    server.get("/api/clear").raise_for_status()
    thread.join(30)  # it sleeps at most 5 s between polls
    assert not thread.is_alive(), "the original client kept polling a cancelled task"
    error = outcome["error"]
    assert isinstance(error, urllib.error.HTTPError) and error.code == 410
    assert json.loads(error.read())["status"] == "cancelled"
    assert not (tmp_path / "never.jpg").exists()

    # Its own get_json on that task's status: the same end.
    with pytest.raises(urllib.error.HTTPError) as ended:
        original_client.get_json(f"{server.url}/api/status?task_id={task_id}")
    assert ended.value.code == 410


def test_original_python_client_stops_on_a_failed_task(original_client, shared_server, tmp_path):
    with pytest.raises(urllib.error.HTTPError) as ended:
        original_client.generate_one_image(shared_server.url, "boom [demo-fault:raise]", str(tmp_path / "x.jpg"))
    assert ended.value.code == 410
    body = json.loads(ended.value.read())
    assert body["status"] == "failed" and "demo fault injected" in body["error"]


# -- the Python functions of its README ----------------------------------------------------------------------------


def readme_functions() -> dict:
    """The README's Python code, as its text has it (rendered from Markdown: no fences), exec'd.

    A block starts at a line `def …` and runs over the indented and blank lines that follow it.
    """
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in needs(README).read_text(encoding="utf-8").splitlines():
        if line.startswith("def "):
            current = [line]
            blocks.append(current)
        elif current is not None and (not line.strip() or line[:1].isspace()):
            current.append(line)
        else:
            current = None
    source = "\n".join(line for block in blocks for line in block)
    namespace = {"requests": requests, "time": time, "Image": Image, "BytesIO": io.BytesIO}
    exec(compile(source, str(README), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def readme():
    functions = readme_functions()
    wanted = ("mflux_generate_client", "mflux_status_ready", "mflux_get_image", "generate_image")
    assert all(name in functions for name in wanted), "the README's functions were not all found"
    return functions


def test_original_readme_functions_make_images(readme, shared_server, capsys):
    url = shared_server.url
    task_id = readme["mflux_generate_client"](url, "A beautiful landscape", seed="1725311496")  # 1280x720, 4 steps
    assert isinstance(task_id, str)
    wait_for(lambda: readme["mflux_status_ready"](url, task_id) == 0, 30, what="the README's status check to say 0")
    image = Image.open(io.BytesIO(readme["mflux_get_image"](url, task_id)))
    assert (image.format, image.size) == ("JPEG", (1280, 720))
    assert readme["mflux_get_image"](url, task_id) is None  # fetched with delete=true: gone
    assert readme["mflux_status_ready"](url, "no-such-task") == -1

    image = readme["generate_image"](url, "A beautiful landscape", width=512, height=384, steps=2)
    assert isinstance(image, Image.Image) and image.size == (512, 384)
    assert "Time taken:" in capsys.readouterr().out


def test_original_readme_status_check_says_minus_one_for_a_cancelled_or_failed_task(readme, server_factory):
    server = server_factory(demo_speed=2)
    blocker = block_the_engine(server)
    task_id = readme["mflux_generate_client"](server.url, "a landscape to be cancelled", width=256, height=256)
    assert readme["mflux_status_ready"](server.url, task_id) >= 1  # waiting: seconds to wait, at least 1
    server.get("/api/cancel", params={"task_id": task_id}).raise_for_status()
    assert readme["mflux_status_ready"](server.url, task_id) == -1  # a caller can stop here

    failed = readme["mflux_generate_client"](server.url, "boom [demo-fault:raise]", width=256, height=256)
    server.get("/api/cancel", params={"task_id": blocker}).raise_for_status()  # the failing task runs next
    server.wait_status(failed, "failed", timeout=30)
    assert readme["mflux_status_ready"](server.url, failed) == -1


# -- its Gradio UI's generate function ---------------------------------------------------------------------------

# Runs in the Gradio environment: the UI module's imports and its generate_image_gradio, taken from its source,
# exec'd; every value it yields printed as a JSON line. (The module as a whole builds its gr.Interface with
# `allow_flagging`, which gradio 6 no longer takes, and launches a server at import.)
GRADIO_DRIVER = r"""
import ast, json, sys
path, endpoint, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tree = ast.parse(open(path, encoding="utf-8").read(), path)
keep = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
        or (isinstance(node, ast.FunctionDef) and node.name == "generate_image_gradio")]
namespace = {"__name__": "original_gradio_ui", "mfluxendpoint": endpoint}
exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
for image, status in namespace["generate_image_gradio"](*args):
    shown = None if image is None else {"size": list(image.size), "format": image.format}
    print(json.dumps({"image": shown, "status": status}), flush=True)
"""


class GradioRun:
    """generate_image_gradio(prompt, width, height, steps, seed, format, quality, priority) in .venv-gradio."""

    def __init__(self, server_url: str, prompt: str, width: int = 256, height: int = 256, steps: int = 2) -> None:
        args = [prompt, width, height, steps, "", "JPEG", 85, False]
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1"}
        self.process = subprocess.Popen(
            [str(GRADIO_PYTHON), "-c", GRADIO_DRIVER, str(GRADIO_UI), server_url, json.dumps(args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.yields: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.yields.append(json.loads(line))

    def wait_yield(self, pattern: str, timeout: float = 60) -> dict:
        def found() -> dict | None:
            ended = self.process.poll() is not None
            if ended:
                self.reader.join(5)  # everything it printed has been read
            match = next((y for y in self.yields if re.search(pattern, y["status"])), None)
            if match is None and ended:
                stderr = self.process.stderr.read()
                raise AssertionError(f"it returned without yielding {pattern!r}: {self.yields}\n{stderr}")
            return match

        return wait_for(found, timeout, interval=0.05, what=f"generate_image_gradio to yield {pattern!r}")

    def finish(self, timeout: float = 30) -> list[dict]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"generate_image_gradio did not return within {timeout:g} s: {self.yields}") from None
        self.reader.join(5)
        assert self.process.returncode == 0, self.process.stderr.read()
        return self.yields


@pytest.fixture
def gradio_ui():
    needs(GRADIO_UI)
    if not GRADIO_PYTHON.exists():
        pytest.skip('no .venv-gradio: python3 -m venv .venv-gradio && .venv-gradio/bin/pip install "gradio>=5,<7"')
    runs: list[GradioRun] = []

    def run(*args, **kwargs) -> GradioRun:
        runs.append(GradioRun(*args, **kwargs))
        return runs[-1]

    yield run
    for started in runs:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(5)


def test_original_gradio_generate_yields_the_image(gradio_ui, shared_server):
    yields = gradio_ui(shared_server.url, "a red fox", width=320, height=256).finish(60)
    assert yields[0]["status"].startswith("Task started. Expected time:")
    assert yields[-1] == {"image": {"size": [320, 256], "format": "JPEG"}, "status": "Image generation completed."}


def test_original_gradio_generate_stops_on_a_cancelled_or_failed_task(gradio_ui, shared_server, server_factory):
    server = server_factory(demo_speed=2)
    block_the_engine(server)
    run = gradio_ui(server.url, "a fox nobody will see")
    run.wait_yield(r"^Status: waiting, Position in queue: \d+")  # it polls once a second
    server.get("/api/clear").raise_for_status()
    yields = run.finish(30)
    assert yields[-1] == {"image": None, "status": "Failed to get status."}

    failed = gradio_ui(shared_server.url, "boom [demo-fault:raise]").finish(60)
    assert failed[-1] == {"image": None, "status": "Failed to get status."}


def test_original_clients_are_loaded_from_the_reference_not_copied():
    """The original's code stays outside the project: no file of ours carries its functions."""
    markers = ("def generate_one_image(", "def generate_image_gradio(", "def mflux_status_ready(")
    ours = [
        path for path in ROOT.rglob("*.py")
        if not any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(ROOT).parts)
        and path != Path(__file__).resolve()
    ]  # fmt: skip
    copied = [str(p.relative_to(ROOT)) for p in ours if any(m in p.read_text(errors="replace") for m in markers)]
    assert copied == []
