"""Run `python -m mflux_mcp` as an MCP client would: a subprocess driven over stdio by the SDK's real client.

The stdio client gives the child only a minimal environment (HOME, PATH, …), so PYTHONPATH, which makes
`mflux_mcp` and `mflux_client` importable from the source tree, is passed explicitly, as a user's MCP
client configuration would pass MFLUX_SERVER_API_KEY.
"""

from __future__ import annotations

import base64
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from io import BytesIO
from pathlib import Path
from typing import TypeVar

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@asynccontextmanager
async def mcp_session(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """An initialized session with a fresh `python -m mflux_mcp ARGS` process; the process ends afterwards."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mflux_mcp", *args],
        env={"PYTHONPATH": str(ROOT / "clients"), **(env or {})},
        cwd=str(ROOT),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write, read_timeout_seconds=60) as session:
        await session.initialize()
        yield session


def run(scenario: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
    """Run an async scenario from a plain test, with a hard cap so that a hung subprocess cannot hang the suite."""

    async def capped() -> T:
        with anyio.fail_after(timeout):
            return await scenario()

    return anyio.run(capped)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def image_of(result: CallToolResult) -> tuple[Image.Image, str]:
    """The decoded image of a result (checking there is exactly one), and its declared MIME type."""
    blocks = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(blocks) == 1, f"expected one image, got {[b.type for b in result.content]}: {text_of(result)}"
    image = Image.open(BytesIO(base64.b64decode(blocks[0].data, validate=True)))
    image.load()
    return image, blocks[0].mime_type


def unused_port() -> int:
    """A loopback port nothing listens on (bound and released: connecting to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
