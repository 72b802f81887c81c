"""What each MCP tool does, independent of how it is declared to the MCP client (that is server.py's job).

Every tool returns a `CallToolResult`; any exception becomes a result with `is_error=True` whose text says
what went wrong in the agent's terms (errors.py), so a tool call never fails at the protocol level.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import requests
from mcp.types import CallToolResult

from mflux_client import MfluxError, Submission, TaskCancelled, TaskFailed, TaskStatus
from mflux_mcp.backend import Backend
from mflux_mcp.errors import ToolProblem, explain
from mflux_mcp.follow import OnStatus, follow
from mflux_mcp.results import (
    describe_status,
    error_result,
    handle_result,
    image_result,
    image_size,
    status_json,
    text_result,
)
from mflux_mcp.settings import Settings

log = logging.getLogger("mflux_mcp")


def reports_errors(
    method: Callable[..., Awaitable[CallToolResult]],
) -> Callable[..., Awaitable[CallToolResult]]:
    """Turn any exception of a tool into an error result the agent can read (cancellation still propagates)."""

    @functools.wraps(method)
    async def wrapper(self: Tools, *args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return await method(self, *args, **kwargs)
        except (MfluxError, ToolProblem, requests.RequestException) as error:  # the server's or the caller's
            log.info("%s: %r", method.__name__, error)
            return self._error(error)
        except Exception as error:  # a bug here: keep the traceback for whoever reads the MCP client's log
            log.exception("%s: unexpected error", method.__name__)
            return self._error(error)

    return wrapper


class Tools:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.backend = backend or Backend(settings)

    def _error(self, error: BaseException) -> CallToolResult:
        return error_result(explain(error, self.settings.server_url, bool(self.settings.api_key)))

    @reports_errors
    async def generate_image(
        self,
        prompt: str,
        *,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        model: str | None = None,
        negative_prompt: str | None = None,
        format: str | None = None,  # shadows the builtin: it is the server's own field name
        image: str | None = None,
        image_strength: float | None = None,
        mask: str | None = None,
        wait_seconds: float | None = None,
        on_status: OnStatus | None = None,
    ) -> CallToolResult:
        started = time.monotonic()
        pictures = {"init_image": picture(image, "image"), "mask": picture(mask, "mask")}
        # Shielded: a cancellation arriving mid-request would lose the task id of a task that was queued.
        with anyio.CancelScope(shield=True):
            submission = await self.backend.submit(
                prompt, width=width, height=height, steps=steps, seed=seed, model=model,
                negative_prompt=negative_prompt, format=format.upper() if format else None,
                image_strength=image_strength, **{name: value for name, value in pictures.items() if value},
            )  # fmt: skip
        wait = self.settings.wait_seconds if wait_seconds is None else wait_seconds
        try:
            status = await follow(self.backend, submission.task_id, wait, on_status)
        except anyio.get_cancelled_exc_class():
            # The MCP client gave up on this call (its timeout, or the user stopped the agent), and it never
            # learned the task id: nobody can fetch this image, so do not render it for nobody.
            with anyio.move_on_after(5, shield=True):
                await self.backend.cancel(submission.task_id, abandon_on_cancel=True)
            raise
        facts = _submission_json(submission, model)
        if status.status != "done":
            _raise_if_ended(status)
            lead = f"Not finished after {wait:g} s: task" if wait > 0 else "Queued: task"
            return handle_result(status, lead, facts)
        image = await self.backend.image(submission.task_id, delete=True)
        seconds = time.monotonic() - started
        text = (
            f"Generated image of task {submission.task_id} in {seconds:.1f} s: {submission.width}×{submission.height}, "
            f"seed {submission.seed}, {submission.steps} steps{f', model {model}' if model else ''}. "
            "The same prompt, seed and size give the same image again."
        )
        return image_result(image, text, {**facts, "status": "done", "seconds": round(seconds, 3)})

    @reports_errors
    async def get_task(
        self, task_id: str, *, keep: bool = False, wait_seconds: float = 0.0, on_status: OnStatus | None = None
    ) -> CallToolResult:
        status = await follow(self.backend, task_id, wait_seconds, on_status)
        if status.status != "done":
            _raise_if_ended(status)
            return handle_result(status, "Not done yet: task")
        image = await self.backend.image(task_id, delete=not keep)
        size = image_size(image.data)
        size_text = f" {size[0]}×{size[1]}" if size else ""
        kept = (
            "It stays on the server until it expires; call get_task again without keep to fetch and delete it."
            if keep
            else "The server has deleted it now."
        )
        structured = {**status_json(status), "kept": keep}
        if size:
            structured |= {"width": size[0], "height": size[1]}
        return image_result(image, f"Task {task_id} is done: the{size_text} image. {kept}", structured)

    @reports_errors
    async def cancel_task(self, task_id: str) -> CallToolResult:
        answer = await self.backend.cancel(task_id)
        previous, now = answer.get("previous_status"), answer.get("status")
        if answer.get("cancelled"):
            text = f"Cancelled task {task_id} (it was {previous})."
        else:
            text = f"Task {task_id} had already ended ({now}); nothing to cancel."
            if now == "done":
                text += " Its image can still be fetched with get_task."
        return text_result(text, answer)

    @reports_errors
    async def list_models(self) -> CallToolResult:
        models, info = await self.backend.models()
        lines = []
        for model in models:
            notes = ["the default, used when generate_image gets no model"] if model.default else []
            if model.default and info.label:
                notes.append(info.label)
            details = model.details
            if details.get("kind") and details["kind"] != "text-to-image":
                notes.append(f"{details['kind']}: needs an input image")
            if "steps" in details:
                notes.append(f"{details['steps']} steps by default")
            if details.get("loaded"):
                notes.append("loaded")
            elif details.get("switch_seconds"):
                notes.append(f"loading it first adds about {details['switch_seconds']:.0f} s")
            lines.append(f"- {model.name}" + (f" ({'; '.join(notes)})" if notes else ""))
        limits = (
            f"Sizes: {info.min_side}–{info.max_side} px per side (rounded down to multiples of {info.size_step}), "
            f"at most {info.max_pixels:,} pixels; steps 1–{info.max_steps}"
            + (f" (default {info.default_steps})" if info.default_steps else "")
            + f"; formats {', '.join(info.formats)}."
        )
        text = "Models on this mflux-server:\n" + ("\n".join(lines) or "- (none reported)") + "\n" + limits
        structured = {
            "models": [{"name": m.name, "default": m.default, **m.details} for m in models],
            "default": info.model,
            "info": info.raw,
        }
        return text_result(text, structured)


def _raise_if_ended(status: TaskStatus) -> None:
    """A task that ended without an image becomes the client's typed error (which explain() words)."""
    if status.status == "failed":
        raise TaskFailed(describe_status(status), status)
    if status.status == "cancelled":
        raise TaskCancelled(describe_status(status), status)


def _submission_json(submission: Submission, model: str | None) -> dict[str, Any]:
    facts = {"task_id": submission.task_id, "seed": submission.seed, "width": submission.width,
             "height": submission.height, "steps": submission.steps}  # fmt: skip
    return facts | ({"model": model} if model else {})  # no model given: the server's default


def picture(value: str | None, name: str) -> str | bytes | None:
    """An image argument as the client library takes it: a file on this machine (the agent's), or the bytes of
    base64 text; anything else is the agent's mistake, said plainly."""
    if not value:
        return None
    path = os.path.expanduser(value)
    if os.path.isfile(path):
        return path
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ToolProblem(f"{name}: not a file on this machine, nor an image as base64 ({value[:60]!r}).") from None
