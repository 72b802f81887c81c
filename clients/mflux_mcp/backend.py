"""Async access to the mflux-server for the tools, over the project's own HTTP client (`mflux_client`).

`MfluxClient` is synchronous (requests); the MCP server runs on an event loop and serves several tool calls at
once, so every HTTP call runs in a worker thread. Each worker thread keeps its own client, because a
`requests.Session` is not guaranteed to be thread-safe, while reusing it keeps connections alive between the
many status polls of a wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread

from mflux_client import MfluxClient, MfluxServerError, Submission, TaskStatus
from mflux_mcp.settings import ServerInfo, Settings

T = TypeVar("T")


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    mime_type: str


@dataclass(frozen=True)
class Model:
    name: str
    default: bool
    details: dict[str, Any] = field(default_factory=dict)


class ServerApi(MfluxClient):
    """`MfluxClient` plus the two things the tools need that it does not offer."""

    def fetch_image(self, task_id: str, delete: bool) -> FetchedImage:
        """The encoded image with the content type the server gave it (`image()` returns only the bytes)."""
        response = self._request("GET", "/api/image", params={"task_id": task_id, "delete": str(delete).lower()})
        mime_type = response.headers.get("Content-Type", "").split(";")[0].strip() or "application/octet-stream"
        return FetchedImage(response.content, mime_type)

    def model_list(self) -> dict[str, Any] | None:
        """GET /api/ls (a JSON object keyed by model name), or None if this server has no such endpoint."""
        try:
            listing = self._json("GET", "/api/ls")
        except MfluxServerError as error:
            if error.status_code is None:  # unreachable: falling back to /api/info would only fail again
                raise
            return None  # 404 on servers without /api/ls; any other refusal is /api/info's to report
        return listing if isinstance(listing, dict) else None


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    def _api(self) -> ServerApi:
        api = getattr(self._local, "api", None)
        if api is None:
            api = ServerApi(self.settings.server_url, api_key=self.settings.api_key, timeout=self.settings.http_timeout)
            self._local.api = api
        return api

    async def _call(self, action: Callable[[ServerApi], T], abandon_on_cancel: bool = False) -> T:
        return await anyio.to_thread.run_sync(lambda: action(self._api()), abandon_on_cancel=abandon_on_cancel)

    async def submit(self, prompt: str, **params: Any) -> Submission:
        return await self._call(lambda api: api.submit(prompt, **params))

    async def status(self, task_id: str) -> TaskStatus:
        return await self._call(lambda api: api.status(task_id))

    async def image(self, task_id: str, delete: bool = True) -> FetchedImage:
        return await self._call(lambda api: api.fetch_image(task_id, delete))

    async def cancel(self, task_id: str, abandon_on_cancel: bool = False) -> dict[str, Any]:
        return await self._call(lambda api: api.cancel(task_id), abandon_on_cancel=abandon_on_cancel)

    async def info(self) -> ServerInfo:
        return ServerInfo.from_json(await self._call(lambda api: api.info()))

    async def models(self) -> tuple[list[Model], ServerInfo]:
        """The server's models (from /api/ls if it has it, else /api/info's one model) and its info."""
        info = await self.info()
        listing = await self._call(lambda api: api.model_list())
        if listing is None:
            return [Model(info.model, True)] if info.model else [], info
        models = [
            Model(str(name), name == info.model, details if isinstance(details, dict) else {"value": details})
            for name, details in listing.items()
        ]
        return models, info


def probe_info(settings: Settings, timeout: float = 3.0) -> ServerInfo | Exception:
    """/api/info at start, to put the server's limits into the tool descriptions; quick, since clients wait.

    Returns the error instead of raising it: a server that is down now may be up by the first tool call.
    """
    with ServerApi(settings.server_url, api_key=settings.api_key, timeout=timeout) as api:
        try:
            return ServerInfo.from_json(api.info())
        except Exception as error:  # anything at all: the MCP server must start regardless
            return error
