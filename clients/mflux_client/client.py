"""MfluxClient: submit prompts to an mflux-server, follow them, fetch the images.

    from mflux_client import MfluxClient
    client = MfluxClient("http://localhost:4030")
    images = client.generate("a lighthouse at dusk", n=2, width=512, height=512, seed=7)  # seeds 7 and 8
    [night] = client.generate("the same lighthouse at night", init_image="dusk.png", image_strength=0.5)

Step by step: `submit` → `wait` (or `status` in a loop of your own) → `image`. Errors the server answers
with become the typed exceptions of `mflux_client.errors`, carrying the server's message.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable, Mapping
from io import BytesIO
from typing import Any, Literal, overload

import requests
from PIL import Image

from mflux_client.errors import (
    ImageNotReady,
    InvalidRequest,
    MfluxServerError,
    QueueFull,
    ServerUnavailable,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    Unauthorized,
    WaitTimeout,
)
from mflux_client.models import LoadedModel, ModelEntry, Submission, TaskStatus, next_poll_delay

DEFAULT_URL = "http://localhost:4030"
MAX_SEED = 2**32 - 1  # the server's range; consecutive seeds wrap around inside it


ENDED_WITHOUT_IMAGE = 410  # /api/status of a failed or cancelled task (so that the original's clients stop)


class MfluxClient:
    """A thin, typed wrapper over the server's HTTP API (one `requests.Session`, reused)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 30,
        session: requests.Session | None = None,
    ) -> None:
        """`timeout` bounds each HTTP request, not a whole generation (see `wait(timeout=...)` for that)."""
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._own_session = session is None
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"MfluxClient({self.base_url!r})"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> MfluxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the queue --------------------------------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        *,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        guidance: float | None = None,
        format: str | None = None,  # shadows the builtin: it is the API's own field name
        quality: int | None = None,
        priority: bool = False,
        negative_prompt: str | None = None,
        model: str | None = None,
        quantize: int | None = None,
        loras: Iterable[LoraSpec] | None = None,
        init_image: ImageInput | None = None,
        init_images: Iterable[ImageInput] | None = None,
        image_strength: float | None = None,
        mask: ImageInput | None = None,
        mask_blur: int | None = None,
        resize: str | None = None,
    ) -> Submission:
        """Queue one image. Parameters left at None take the server's defaults; seed None draws one at random.

        `model` is a name or alias from `models()` (None: the server's default model, which this does not change);
        `quantize` its bits; `loras` LoRA adapters from the server's library: names, (name, scale) pairs or
        {"name", "scale"} dicts. The answer carries the seed, the size (sizes are rounded down to the model's
        size step) and the model variant actually used.

        Images (each a file path, the bytes of a PNG/JPEG/WEBP file, or a PIL image): `init_image` the picture to
        start from (img2img for text-to-image models whose `ModelEntry.img2img` is true; the picture to change
        for an edit model; the input of an upscale model), `init_images` an edit model's further references,
        `image_strength` how much of the init image is kept (0 to 1, server default 0.4; text-to-image models
        only), `mask` which part to repaint (white = repaint, black = keep; outside it the result is the init
        image), `mask_blur` its feathering in pixels, `resize` how an init image of another shape meets
        width x height ("stretch", "crop" or "fill"). Without width and height the result takes the init
        image's size (twice it for an upscale model).
        """
        body: dict[str, Any] = {"prompt": prompt, "priority": priority}
        optional = {"width": width, "height": height, "steps": steps, "seed": seed, "guidance": guidance,
                    "format": format, "quality": quality, "negative_prompt": negative_prompt, "model": model,
                    "quantize": quantize, "image_strength": image_strength, "mask_blur": mask_blur,
                    "resize": resize}  # fmt: skip
        body.update({key: value for key, value in optional.items() if value is not None})
        if loras is not None:
            body["loras"] = lora_list(loras)
        body.update(image_fields(init_image, init_images, mask))
        return Submission.from_json(self._json("POST", "/api/generate", json=body))

    def status(self, task_id: str) -> TaskStatus:
        response = self._send("GET", "/api/status", params={"task_id": task_id})
        if response.status_code == ENDED_WITHOUT_IMAGE:  # failed or cancelled: the body is the status all the same
            return TaskStatus.from_json(response.json(), task_id)
        return TaskStatus.from_json(self._checked(response).json(), task_id)

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        on_update: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Poll until the task is done, sleeping as the server's forecast suggests; return its last status.

        Raises TaskFailed or TaskCancelled if it ended without an image, WaitTimeout after `timeout` seconds
        (the task goes on on the server). `on_update` is called with every status read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(task_id)
            if on_update is not None:
                on_update(status)
            if status.status == "done":
                return status
            if status.status == "failed":
                raise TaskFailed(f"task {task_id} failed: {status.error or 'no reason given'}", status)
            if status.status == "cancelled":
                raise TaskCancelled(f"task {task_id} was cancelled", status)
            delay = next_poll_delay(status)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(task_id, timeout, status)
                delay = min(delay, left)
            time.sleep(delay)

    @overload
    def image(self, task_id: str, *, delete: bool = True, as_bytes: Literal[False] = False) -> Image.Image: ...
    @overload
    def image(self, task_id: str, *, delete: bool = True, as_bytes: Literal[True]) -> bytes: ...

    def image(self, task_id: str, *, delete: bool = True, as_bytes: bool = False) -> Image.Image | bytes:
        """The finished image, decoded (or its encoded bytes, as the server stored them).

        With delete=True (the server's default too) the server forgets the image once it is sent.
        """
        params = {"task_id": task_id, "delete": str(delete).lower()}
        data = self._request("GET", "/api/image", params=params).content
        if as_bytes:
            return data
        image = Image.open(BytesIO(data))
        image.load()  # decode now, so a broken file fails here and not at first use
        return image

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a waiting task or stop a running one; `cancelled` is False if it had already ended."""
        return self._json("DELETE", "/api/cancel", params={"task_id": task_id})

    def clear(self) -> dict[str, Any]:
        """Cancel every waiting and running task on the server (everyone's, not only this client's)."""
        return self._json("DELETE", "/api/clear")

    def tasks(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The server's task list in queue order: running, waiting, then finished ones not fetched yet."""
        return self._json("GET", "/api/tasks", params={"limit": limit} if limit is not None else None)

    def info(self) -> dict[str, Any]:
        """Engine, model, defaults and limits (min_side, max_side, max_steps, …)."""
        return self._json("GET", "/api/info")

    # -- models ---------------------------------------------------------------------------------------------

    def models(self, *, all: bool = False) -> list[ModelEntry]:  # shadows the builtin: the API's own name
        """The models the server offers (GET /api/ls), in its order; `all=True`: its whole catalog."""
        listing = self._json("GET", "/api/ls", params={"all": "true"} if all else None)
        return [ModelEntry.from_json(name, entry) for name, entry in listing.items()]

    def load_model(self, name: str, quantize: int | None = None, *, timeout: float | None = None) -> LoadedModel:
        """Make `name` the server's default model (for every client's tasks that name none) and wait until it is
        loaded: that can take minutes for a large model. `timeout` bounds the wait (None: no bound)."""
        body: dict[str, Any] = {"model": name}
        if quantize is not None:
            body["quantize"] = quantize
        return LoadedModel.from_json(self._json("POST", "/api/load", json=body, timeout=(self.timeout, timeout)))

    def health(self) -> dict[str, Any]:
        """The server's health report; `ok` is False (rather than an exception) when the worker is down."""
        response = self._send("GET", "/api/health")
        if response.status_code == 503:
            payload = _payload_of(response)
            if "ok" in payload:
                return payload
        return self._checked(response).json()

    # -- one call -----------------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        n: int = 1,
        *,
        seed: int | None = None,
        timeout: float | None = None,
        on_update: Callable[[TaskStatus], None] | None = None,
        **params: Any,
    ) -> list[Image.Image]:
        """Generate `n` images of one prompt with seeds s, s+1, …; block until all are fetched.

        `params` are those of `submit` (`model=`, `loras=`, `width=`, `init_image=`, `mask=`, …); the images are
        read once for all n tasks. With seed None the server draws s. If anything goes wrong (or on Ctrl-C) the
        tasks not finished yet are cancelled on the server before the exception propagates.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        for name in ("init_image", "mask"):
            if params.get(name) is not None:
                params[name] = image_bytes(params[name])
        if params.get("init_images") is not None:
            params["init_images"] = [image_bytes(image) for image in params["init_images"]]
        submissions: list[Submission] = []
        try:
            first = self.submit(prompt, seed=seed, **params)
            submissions.append(first)
            submissions.extend(
                self.submit(prompt, seed=(first.seed + i) % (MAX_SEED + 1), **params) for i in range(1, n)
            )
            deadline = None if timeout is None else time.monotonic() + timeout
            images = []
            for submission in submissions:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self.wait(submission.task_id, timeout=left, on_update=on_update)
                images.append(self.image(submission.task_id))
            return images
        except BaseException:
            self._cancel_quietly(s.task_id for s in submissions)
            raise

    def _cancel_quietly(self, task_ids) -> None:
        for task_id in task_ids:
            try:
                self.cancel(task_id)  # a finished task just answers cancelled=False
            except MfluxServerError:
                pass

    # -- HTTP -------------------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self._checked(self._send(method, path, **kwargs))

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, self.base_url + path, headers=headers, **kwargs)
        except requests.ConnectionError as error:
            raise ServerUnavailable(f"cannot reach the server at {self.base_url}: {_reason(error)}") from error
        except requests.Timeout as error:
            limit = kwargs["timeout"][1] if isinstance(kwargs["timeout"], tuple) else kwargs["timeout"]
            raise ServerUnavailable(f"no answer from {self.base_url} within {limit:g} s") from error

    def _checked(self, response: requests.Response) -> requests.Response:
        if response.ok:
            return response
        raise _error_of(response)


LoraSpec = str | tuple[str, float] | Mapping[str, Any]
ImageInput = str | os.PathLike | bytes | Image.Image  # a file, its bytes, or a picture (sent as PNG)


def image_bytes(image: ImageInput) -> bytes:
    """The encoded file of an image input: a path's bytes as they are, a PIL image as PNG."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, Image.Image):
        buffer = BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()
    if isinstance(image, str | os.PathLike):
        with open(image, "rb") as file:
            return file.read()
    raise TypeError(f"an image is a path, bytes or a PIL image, not {type(image).__name__}")


def image_fields(
    init_image: ImageInput | None, init_images: Iterable[ImageInput] | None, mask: ImageInput | None
) -> dict[str, Any]:
    """The body's image fields, base64 (the server reads the format from the bytes)."""
    fields: dict[str, Any] = {}
    if init_image is not None:
        fields["init_image"] = _base64(init_image)
    if init_images is not None:
        fields["init_images"] = [_base64(image) for image in init_images]
    if mask is not None:
        fields["mask_image"] = _base64(mask)
    return fields


def _base64(image: ImageInput) -> str:
    return base64.b64encode(image_bytes(image)).decode("ascii")


def lora_list(loras: Iterable[LoraSpec]) -> list[dict[str, Any]]:
    """LoRAs as the API takes them: [{"name", "scale"}]; a bare name has scale 1."""
    result = []
    for lora in loras:
        if isinstance(lora, str):
            result.append({"name": lora, "scale": 1.0})
        elif isinstance(lora, Mapping):
            result.append({"name": lora["name"], "scale": float(lora.get("scale", 1.0))})
        else:
            name, scale = lora
            result.append({"name": name, "scale": float(scale)})
    return result


def _reason(error: BaseException) -> str:
    """The operating system's words ("Connection refused") from under requests' and urllib3's wrappers."""
    seen: set[int] = set()
    cause: object = error
    while isinstance(cause, BaseException) and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__ or getattr(cause, "reason", None)
    return str(error)


def _payload_of(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _error_of(response: requests.Response) -> MfluxServerError:
    """The typed exception for an error answer, with the server's own message."""
    payload = _payload_of(response)
    code = response.status_code
    message = payload.get("message") or response.reason or f"HTTP {code}"
    if code == 404:
        if "task_status" in payload:
            return ImageNotReady(message, code, payload)
        # Only a request about a task can be "task not found"; any other 404 means a wrong base URL.
        if "task_id" in (response.request.url or ""):
            return TaskNotFound(message, code, payload)
    if code in (400, 422):
        return InvalidRequest(message, code, payload)
    if code in (401, 403):
        return Unauthorized(message, code, payload)
    if code == 429:
        return QueueFull(message, code, payload, retry_after=_seconds(response.headers.get("Retry-After")))
    if code == 503:
        return ServerUnavailable(message, code, payload)
    return MfluxServerError(message, code, payload)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the server sends seconds
