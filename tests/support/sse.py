"""A minimal Server-Sent Events reader for tests: events as they arrive, from a streamed `requests` response."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class SseMessage:
    event: str  # "" for a comment-only block (a keepalive) or a bare `retry:`
    id: str | None
    data: dict | None
    comments: tuple[str, ...] = ()
    retry: int | None = None


def read_events(response: requests.Response) -> Iterator[SseMessage]:
    """Yield each block as soon as its blank line arrives (waitress sends the chunks as they are written)."""
    buffer = ""
    for chunk in response.iter_content(chunk_size=None, decode_unicode=True):
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield _parse(block)


def _parse(block: str) -> SseMessage:
    event, event_id, data, retry, comments = "", None, [], None, []
    for line in block.split("\n"):
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "id":
            event_id = value
        elif name == "data":
            data.append(value)
        elif name == "retry":
            retry = int(value)
    return SseMessage(event, event_id, json.loads("\n".join(data)) if data else None, tuple(comments), retry)


def open_stream(url: str, task_id: str, **kwargs) -> requests.Response:
    response = requests.get(
        url + "/api/events", params={"task_id": task_id}, stream=True, timeout=kwargs.pop("timeout", 30), **kwargs
    )
    return response
