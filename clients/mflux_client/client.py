"""MfluxClient: submit prompts to an mflux-server, follow them, fetch the images.

    from mflux_client import MfluxClient
    client = MfluxClient("http://localhost:4030")
    images = client.generate("a lighthouse at dusk", n=2, width=512, height=512, seed=7)  # seeds 7 and 8

Step by step: `submit` → `wait` (or `status` in a loop of your own) → `image`. Errors the server answers
with become the typed exceptions of `mflux_client.errors`, carrying the server's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
from mflux_client.models import Submission, TaskStatus, next_poll_delay

DEFAULT_URL = "http://localhost:4030"
MAX_SEED = 2**32 - 1  # the server's range; consecutive seeds wrap around inside it


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
    ) -> Submission:
        """Queue one image. Parameters left at None take the server's defaults; seed None draws one at random.

        The answer carries the seed and the size actually used (sizes are rounded down to multiples of 16).
        """
        body: dict[str, Any] = {"prompt": prompt, "priority": priority}
        optional = {"width": width, "height": height, "steps": steps, "seed": seed, "guidance": guidance,
                    "format": format, "quality": quality, "negative_prompt": negative_prompt}  # fmt: skip
        body.update({key: value for key, value in optional.items() if value is not None})
        return Submission.from_json(self._json("POST", "/api/generate", json=body))

    def status(self, task_id: str) -> TaskStatus:
        data = self._json("GET", "/api/status", params={"task_id": task_id})
        return TaskStatus.from_json(data, task_id)

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

        `params` are those of `submit`. With seed None the server draws s. If anything goes wrong (or on
        Ctrl-C) the tasks not finished yet are cancelled on the server before the exception propagates.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
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
        try:
            return self.session.request(method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as error:
            raise ServerUnavailable(f"cannot reach the server at {self.base_url}: {_reason(error)}") from error
        except requests.Timeout as error:
            raise ServerUnavailable(f"no answer from {self.base_url} within {self.timeout:g} s") from error

    def _checked(self, response: requests.Response) -> requests.Response:
        if response.ok:
            return response
        raise _error_of(response)


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
