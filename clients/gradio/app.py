"""A Gradio front end for mflux-server. It talks to the server over HTTP only, so it runs anywhere.

    python clients/gradio/app.py --server http://127.0.0.1:4030 --port 7860

Needs only `gradio` and `requests` (see README.md beside this file). The generate function is also an API:
`gradio_client.Client("http://127.0.0.1:7860").predict(prompt, ..., api_name="/generate")`.
"""

from __future__ import annotations

import os

# Before gradio is imported (ruff allows this above imports): no usage analytics, no calls to the internet.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import argparse
import base64
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import requests

DEFAULT_SERVER = "http://localhost:4030"
FORMATS = ["JPEG", "PNG", "WEBP"]
SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
MAX_IMAGES = 16
MAX_SEED = 2**32 - 1
HTTP_TIMEOUT = 30

# Gradio copies returned files into its own cache; ours only need to live until then (and go at exit).
_OUTPUT_DIR = tempfile.TemporaryDirectory(prefix="mflux-gradio-")


class ServerApi:
    """The few calls this app makes; every failure becomes a gr.Error with the server's own message."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        base_url = (base_url or "").strip().rstrip("/")
        if not base_url:
            raise gr.Error("Please enter the server address, e.g. http://localhost:4030.")
        self.base_url = base_url if "://" in base_url else "http://" + base_url
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, accept: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        """The response, or gr.Error for a failure (`accept`: error statuses whose body is the answer)."""
        try:
            response = self.session.request(method, self.base_url + path, timeout=HTTP_TIMEOUT, **kwargs)
        except requests.RequestException as error:
            raise gr.Error(f"Cannot reach the mflux server at {self.base_url} ({type(error).__name__}).") from error
        if not response.ok and response.status_code not in accept:
            raise gr.Error(f"The server answered {response.status_code}: {_message_of(response)}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()

    def status(self, task_id: str) -> dict[str, Any]:
        """/api/status; a failed or cancelled task answers 410 with its status in the body, as any other."""
        return self.json("GET", "/api/status", accept=(410,), params={"task_id": task_id})

    def models(self) -> dict[str, dict[str, Any]]:
        """/api/ls: name → entry (label, defaults, whether it is loaded, what a switch to it costs)."""
        listing = self.json("GET", "/api/ls")
        return listing if isinstance(listing, dict) else {}


def _message_of(response: requests.Response) -> str:
    try:
        return str(response.json().get("message") or response.reason)
    except (ValueError, AttributeError):
        return response.reason or "no reason given"


@dataclass
class Job:
    task_id: str
    seed: int
    width: int
    height: int
    status: dict[str, Any]  # the latest answer of /api/status
    path: Path | None = None


class FrontEnd:
    """The app's event handlers, with its settings (no module globals)."""

    def __init__(self, server_url: str, api_key: str | None = None) -> None:
        self.server_url = server_url
        self.api_key = api_key
        # Task ids each browser session is waiting for, so its Cancel button can cancel them on the server.
        self._active: dict[str, tuple[ServerApi, list[str]]] = {}
        self._cancelled: set[str] = set()  # sessions whose Cancel came while they were still submitting
        self._lock = threading.Lock()

    def generate(
        self,
        prompt: str,
        width: float,
        height: float,
        steps: float,
        seed: float | None,
        random_seed: bool,
        count: float,
        image_format: str,
        server_url: str,
        model: str | None = None,
        init_image: str | None = None,
        mask: str | None = None,
        strength: float | None = None,
        size_from_image: bool = True,
        request: gr.Request = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's way of asking for a progress tracker
    ) -> tuple[list[tuple[str, str]], str]:
        """Submit `count` tasks (seeds s, s+1, …) on `model` (empty: the server's default), follow them with a
        progress bar, return the images.

        `init_image` (a file) is the picture to start from: img2img keeping `strength` of it (for text-to-image
        models that can), the picture an edit model changes, an upscaler's input; `mask` (a file, white =
        repaint) what of it to repaint. With `size_from_image` the result takes the image's size."""
        if not (prompt or "").strip():
            raise gr.Error("Please enter a prompt.")
        api = ServerApi(server_url, self.api_key)
        count = max(1, min(MAX_IMAGES, int(count or 1)))
        body = {
            "prompt": prompt,
            "width": int(width),
            "height": int(height),
            "steps": int(steps),
            "format": image_format or "JPEG",
        }
        if (model or "").strip():
            body["model"] = model.strip()  # for these tasks only: the server's default stays as it is
        body |= _image_fields(api, body.get("model"), init_image, mask, strength)
        if init_image and size_from_image:
            del body["width"], body["height"]
        first_seed = None if random_seed or seed is None or seed < 0 else int(seed) % (MAX_SEED + 1)
        session = request.session_hash if request is not None else None
        started = time.monotonic()
        jobs: list[Job] = []
        try:
            progress(0, desc="Submitting")
            for i in range(count):
                with self._lock:
                    if session in self._cancelled:
                        break
                seed_i = first_seed if i == 0 else (jobs[0].seed + i) % (MAX_SEED + 1)
                answer = api.json("POST", "/api/generate", json=body | ({"seed": seed_i} if seed_i is not None else {}))
                jobs.append(Job(answer["task_id"], answer["seed"], answer["width"], answer["height"], answer))
                if session:
                    with self._lock:
                        self._active[session] = (api, [job.task_id for job in jobs])
            _follow(api, jobs, progress)
        except BaseException:
            _cancel_unfinished(api, jobs)  # nobody will fetch them now
            raise
        finally:
            if session:
                with self._lock:
                    self._active.pop(session, None)
                    self._cancelled.discard(session)

        made = [job for job in jobs if job.path is not None]
        problems = [f"seed {job.seed}: {_ended_without_image(job.status)}" for job in jobs if job.path is None]
        if not made and all(job.status["status"] == "cancelled" for job in jobs):
            return [], "Cancelled."
        if not made:
            raise gr.Error("No image. " + "; ".join(problems))
        if problems:
            gr.Warning("Some images are missing: " + "; ".join(problems))
        seeds = str(made[0].seed) if len(made) == 1 else f"{made[0].seed}…{made[-1].seed}"
        elapsed = time.monotonic() - started
        on = f", on {made[0].status['model']}" if made[0].status.get("model") else ""
        source = ", from the input image" if "init_image" in body else ""
        summary = f"{len(made)} image(s), {made[0].width}×{made[0].height}{source}, seed {seeds}{on}, {elapsed:.1f} s"
        return [(str(job.path), f"seed {job.seed}") for job in made], summary

    def cancel(self, request: gr.Request) -> str:
        """Cancel this browser session's tasks on the server; its generate call then returns what is done."""
        session = request.session_hash if request else ""
        with self._lock:
            api, task_ids = self._active.get(session, (None, []))
            if task_ids:
                self._cancelled.add(session)
        for task_id in task_ids:
            api.call("DELETE", "/api/cancel", params={"task_id": task_id})
        return f"Cancelled {len(task_ids)} task(s)." if task_ids else "Nothing to cancel."

    def server_info(self, server_url: str) -> str:
        """One line about the server: its engine and model, or why it cannot be reached."""
        try:
            info = ServerApi(server_url, self.api_key).json("GET", "/api/info")
        except gr.Error as error:
            return f"⚠️ {error.message}"
        limits = f"up to {info.get('max_side')} px and {info.get('max_steps')} steps"
        return f"Connected: {info.get('label') or info.get('model')} ({limits})"

    def model_choices(self, server_url: str) -> tuple[list[tuple[str, str]], str | None, str]:
        """The server's models as (label, name) choices, the default's name, and a line about the default."""
        try:
            models = ServerApi(server_url, self.api_key).models()
        except gr.Error:
            return [], None, "Cannot list the server's models: its default is used."
        choices = [(_model_label(name, entry), name) for name, entry in models.items()]
        default = next((name for name, entry in models.items() if entry.get("default")), None)
        return choices, default, _switch_text(models[default]) if default else ""

    def models(self, server_url: str) -> dict[str, Any]:
        """Fill the model dropdown from the server's /api/ls, its default selected."""
        choices, default, info = self.model_choices(server_url)
        return gr.update(choices=choices, value=default, info=info)

    def model_info(self, model: str, server_url: str) -> dict[str, Any]:
        """What choosing `model` adds to the wait, as the dropdown's note."""
        try:
            entry = ServerApi(server_url, self.api_key).models().get(model or "")
        except gr.Error:
            entry = None
        return gr.update(info=_switch_text(entry) if entry else "The server's default model.")

    def build_app(self) -> gr.Blocks:
        with gr.Blocks(title="mflux image generator") as demo:
            gr.Markdown("# mflux image generator")
            with gr.Row():
                with gr.Column(scale=1):
                    choices, default, note = self.model_choices(self.server_url)
                    model = gr.Dropdown(choices, value=default, label="Model", info=note, allow_custom_value=True)
                    prompt = gr.Textbox(label="Prompt", lines=3, placeholder="A lighthouse on a cliff at dusk")
                    with gr.Row():
                        width = gr.Slider(64, 2048, value=1024, step=16, label="Width")
                        height = gr.Slider(64, 2048, value=1024, step=16, label="Height")
                    steps = gr.Slider(1, 50, value=4, step=1, label="Steps")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                        random_seed = gr.Checkbox(value=True, label="Random seed")
                    count = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Number of images (seeds s, s+1, …)")
                    with gr.Accordion("Input image: img2img, edit, upscale (optional)", open=False):
                        init_image = gr.Image(type="filepath", format="png", label="Input image",
                                              sources=["upload", "clipboard"])  # fmt: skip
                        mask = gr.Image(type="filepath", format="png", label="Mask: white = repaint, black = keep",
                                        sources=["upload", "clipboard"], image_mode="L")  # fmt: skip
                        strength = gr.Slider(0, 1, value=0.4, step=0.05, label="Keep of the image (img2img)",
                                             info="0: the prompt alone, 1: the image unchanged")  # fmt: skip
                        size_from_image = gr.Checkbox(value=True, label="Size from the image (twice it to upscale)")
                    image_format = gr.Radio(FORMATS, value="JPEG", label="Format")
                    server = gr.Textbox(value=self.server_url, label="Server address")
                    server_line = gr.Markdown()
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Cancel")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Results", columns=2, object_fit="contain")
                    summary = gr.Markdown(label="Summary")

            # Newer inputs come last, so that callers of the API from before them keep working.
            inputs = [prompt, width, height, steps, seed, random_seed, count, image_format, server, model, init_image,
                      mask, strength, size_from_image]  # fmt: skip
            # Several people may wait at once: the server queues their tasks, Gradio need not serialise them.
            triggers = [go.click, prompt.submit]
            gr.on(triggers, self.generate, inputs, [gallery, summary], api_name="generate", concurrency_limit=16)
            stop.click(self.cancel, None, summary, api_name="cancel")
            gr.on([demo.load, server.blur], self.server_info, server, server_line, api_name="server_info")
            gr.on([demo.load, server.blur], self.models, server, model, api_name="models")
            model.input(self.model_info, [model, server], model, api_name=False)
        return demo


def _follow(api: ServerApi, jobs: list[Job], progress: gr.Progress) -> None:
    """Poll the tasks until each has ended, fetching images as they are done; pace by the server's forecast."""
    while pending := [job for job in jobs if job.status["status"] in ("waiting", "running")]:
        for job in pending:
            job.status = api.status(job.task_id)
            if job.status["status"] == "done":
                data = api.call("GET", "/api/image", params={"task_id": job.task_id, "delete": "true"}).content
                job.path = Path(_OUTPUT_DIR.name) / f"{job.task_id}{SUFFIX[_format_of(data)]}"
                job.path.write_bytes(data)
        fraction, description = _progress_of(jobs)
        progress(fraction, desc=description)
        remaining = [job.status for job in jobs if job.status["status"] in ("waiting", "running")]
        if remaining:
            time.sleep(min(_poll_delay(status) for status in remaining))


def _progress_of(jobs: list[Job]) -> tuple[float, str]:
    """Overall fraction done, and a line about the task that is being worked on (or is next)."""
    done = 0.0
    for job in jobs:
        status = job.status
        if status["status"] in ("done", "failed", "cancelled"):
            done += 1
        elif status["status"] == "running" and status.get("progress"):
            done += status["progress"]["step"] / max(1, status["progress"]["steps"])
    current = next((job for job in jobs if job.status["status"] == "running"), None) or next(
        (job for job in jobs if job.status["status"] == "waiting"), None
    )
    if current is None:
        return 1.0, "Done"
    index = jobs.index(current) + 1
    status = current.status
    left = f"~{status.get('wait_remaining', 0):.0f} s left"
    if status["status"] == "running" and status.get("progress"):
        step = status["progress"]
        what = f"step {step['step']}/{step['steps']}"
    elif status["status"] == "running":
        what = "starting"
    else:
        pos = status.get("pos", 0)
        what = "next in the queue" if pos == 0 else f"waiting, {pos} ahead in the queue"
    if status.get("loading_model"):
        what = f"loading {status['loading_model']}…" if status["status"] == "running" else f"{what}, then loading"
    return done / len(jobs), f"Image {index}/{len(jobs)}: {what}, {left}"


def _image_fields(
    api: ServerApi, model: str | None, init_image: str | None, mask: str | None, strength: float | None
) -> dict[str, Any]:
    """The body's image fields: the files as base64; the strength only for a model that starts from the image
    part-way (the server refuses it for edit and upscale models)."""
    if not init_image:
        if mask:
            raise gr.Error("A mask says what to repaint of an input image: add the image too.")
        return {}
    fields: dict[str, Any] = {"init_image": _base64_of(init_image)}
    if mask:
        fields["mask_image"] = _base64_of(mask)
    if strength is not None:
        try:
            models = api.models()
        except gr.Error:
            models = {}  # a server that lists no models: img2img, as the original
        entry = models.get(model) if model else next((e for e in models.values() if e.get("default")), None)
        if entry is None or (entry.get("kind", "text-to-image") == "text-to-image" and entry.get("img2img")):
            fields["image_strength"] = float(strength)
    return fields


def _base64_of(path: str) -> str:
    try:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError as error:
        raise gr.Error(f"Cannot read the image {path}: {error.strerror}") from error


def _poll_delay(status: dict[str, Any]) -> float:
    """As the Python client: a few times over a waiting task's forecast, about twice a second while running."""
    remaining = float(status.get("wait_remaining") or 0)
    if status["status"] == "running":
        return max(0.1, min(0.5, remaining / 2))
    return max(0.2, min(5.0, remaining / 3))


def _model_label(name: str, entry: dict[str, Any]) -> str:
    """The model's label, led by its name unless the label says it (labels of one family often start alike)."""
    label = str(entry.get("label") or name)
    text = label if name in label else f"{name} — {label}"
    notes = [
        " · server default" if entry.get("default") else "",
        " · needs an image" if entry.get("needs_image") else "",
    ]
    return text + "".join(notes)


def _switch_text(entry: dict[str, Any]) -> str:
    """What choosing the model adds to a task's wait."""
    if entry.get("load_error"):
        return f"Cannot be loaded: {entry['load_error']}"
    if entry.get("loaded"):
        return "Loaded: no wait for a switch."
    if entry.get("loading"):
        return "Being loaded now."
    seconds = float(entry.get("switch_seconds") or 0)
    return f"Switching to it adds {'<1 s' if seconds < 1 else f'~{seconds:.0f} s'} to the wait."


def _cancel_unfinished(api: ServerApi, jobs: list[Job]) -> None:
    for job in jobs:
        if job.status["status"] in ("waiting", "running"):
            try:
                api.call("DELETE", "/api/cancel", params={"task_id": job.task_id})
            except gr.Error:
                pass  # the server is gone or the task ended: nothing left to stop


def _ended_without_image(status: dict[str, Any]) -> str:
    if status["status"] == "failed":
        return f"failed: {status.get('error') or 'no reason given'}"
    return str(status["status"])


def _format_of(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return "JPEG"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gradio front end for mflux-server (talks to it over HTTP).")
    parser.add_argument(
        "--server",
        default=os.environ.get("MFLUX_SERVER_URL", DEFAULT_SERVER),
        help=f"the mflux-server URL (default: $MFLUX_SERVER_URL or {DEFAULT_SERVER})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve the app on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument(
        "--api-key",
        default=os.environ.get("MFLUX_API_KEY"),
        help="sent to the server as a Bearer token ($MFLUX_API_KEY)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo = FrontEnd(args.server, args.api_key).build_app()
    demo.launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
