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

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base_url + path, timeout=HTTP_TIMEOUT, **kwargs)
        except requests.RequestException as error:
            raise gr.Error(f"Cannot reach the mflux server at {self.base_url} ({type(error).__name__}).") from error
        if not response.ok:
            raise gr.Error(f"The server answered {response.status_code}: {_message_of(response)}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()


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
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's way of asking for a progress tracker
    ) -> tuple[list[tuple[str, str]], str]:
        """Submit `count` tasks (seeds s, s+1, …), follow them with a progress bar, return the images."""
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
        summary = f"{len(made)} image(s), {made[0].width}×{made[0].height}, seed {seeds}, {elapsed:.1f} s"
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

    def build_app(self) -> gr.Blocks:
        with gr.Blocks(title="mflux image generator") as demo:
            gr.Markdown("# mflux image generator")
            with gr.Row():
                with gr.Column(scale=1):
                    prompt = gr.Textbox(label="Prompt", lines=3, placeholder="A lighthouse on a cliff at dusk")
                    with gr.Row():
                        width = gr.Slider(64, 2048, value=1024, step=16, label="Width")
                        height = gr.Slider(64, 2048, value=1024, step=16, label="Height")
                    steps = gr.Slider(1, 50, value=4, step=1, label="Steps")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                        random_seed = gr.Checkbox(value=True, label="Random seed")
                    count = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Number of images (seeds s, s+1, …)")
                    image_format = gr.Radio(FORMATS, value="JPEG", label="Format")
                    server = gr.Textbox(value=self.server_url, label="Server address")
                    server_line = gr.Markdown()
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Cancel")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Results", columns=2, object_fit="contain")
                    summary = gr.Markdown(label="Summary")

            inputs = [prompt, width, height, steps, seed, random_seed, count, image_format, server]
            # Several people may wait at once: the server queues their tasks, Gradio need not serialise them.
            triggers = [go.click, prompt.submit]
            gr.on(triggers, self.generate, inputs, [gallery, summary], api_name="generate", concurrency_limit=16)
            stop.click(self.cancel, None, summary, api_name="cancel")
            gr.on([demo.load, server.blur], self.server_info, server, server_line, api_name="server_info")
        return demo


def _follow(api: ServerApi, jobs: list[Job], progress: gr.Progress) -> None:
    """Poll the tasks until each has ended, fetching images as they are done; pace by the server's forecast."""
    while pending := [job for job in jobs if job.status["status"] in ("waiting", "running")]:
        for job in pending:
            job.status = api.json("GET", "/api/status", params={"task_id": job.task_id})
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
    return done / len(jobs), f"Image {index}/{len(jobs)}: {what}, {left}"


def _poll_delay(status: dict[str, Any]) -> float:
    """As the Python client: a few times over a waiting task's forecast, about twice a second while running."""
    remaining = float(status.get("wait_remaining") or 0)
    if status["status"] == "running":
        return max(0.1, min(0.5, remaining / 2))
    return max(0.2, min(5.0, remaining / 3))


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
