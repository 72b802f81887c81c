"""Tool results as the agent sees them: content blocks (an image, a short text) and structured content.

The text is written for a language model to read and act on; `structured_content` carries the same facts as
JSON for programs. Errors are results with `is_error=True` rather than exceptions, so that the SDK passes the
message through as is (it hides the text of unexpected exceptions).
"""

from __future__ import annotations

import base64
from io import BytesIO
from typing import Any

from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

from mflux_client import TaskStatus
from mflux_mcp.backend import FetchedImage


def text_result(text: str, structured: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def image_result(image: FetchedImage, text: str, structured: dict[str, Any]) -> CallToolResult:
    block = ImageContent(type="image", data=base64.b64encode(image.data).decode("ascii"), mime_type=image.mime_type)
    return CallToolResult(
        content=[block, TextContent(type="text", text=text)],
        structured_content={**structured, "mime_type": image.mime_type, "bytes": len(image.data)},
    )


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the image's header (no decoding), or None if Pillow cannot read it."""
    try:
        with Image.open(BytesIO(data)) as image:
            return image.size
    except Exception:  # a size is a nicety in the caption; a strange image still goes to the agent
        return None


def describe_status(status: TaskStatus) -> str:
    """'3f2a… is waiting (2 tasks ahead, about 14 s left)' and the like."""
    if status.status == "waiting":
        ahead = "next in line" if status.pos == 0 else f"{status.pos} task{'s' if status.pos != 1 else ''} ahead"
        return f"{status.task_id} is waiting ({ahead}, about {status.wait_remaining:.0f} s left)"
    if status.status == "running":
        step = f"step {status.progress.step} of {status.progress.steps}, " if status.progress else ""
        return f"{status.task_id} is running ({step}about {status.wait_remaining:.0f} s left)"
    if status.status == "failed":
        return f"{status.task_id} failed: {status.error or 'no reason given'}"
    return f"{status.task_id} is {status.status}"


def status_json(status: TaskStatus) -> dict[str, Any]:
    progress = {"step": status.progress.step, "steps": status.progress.steps} if status.progress else None
    return {"task_id": status.task_id, "status": status.status, "pos": status.pos,
            "wait_remaining": status.wait_remaining, "progress": progress, "error": status.error}  # fmt: skip


def handle_result(status: TaskStatus, lead: str, extra: dict[str, Any] | None = None) -> CallToolResult:
    """A task that is not done yet: `lead` ("Not finished after 50 s: task"), its id and state, what to call next."""
    text = (
        f"{lead} {describe_status(status)}. The image is not lost: call get_task with "
        f'task_id "{status.task_id}" later to fetch it (its wait_seconds argument waits for the task), '
        "or cancel_task to stop it."
    )
    return text_result(text, {**(extra or {}), **status_json(status)})
