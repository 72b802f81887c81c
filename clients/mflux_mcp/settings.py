"""The configuration of one mflux-server-mcp process, and what it learned about the server at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_URL = "http://127.0.0.1:4030"
# Many MCP clients give up on a tool call after 60 s (the TypeScript SDK's default request timeout), so a
# generation that takes longer returns a task handle a little before that instead of being lost.
DEFAULT_WAIT_SECONDS = 50.0


@dataclass(frozen=True)
class Settings:
    server_url: str = DEFAULT_URL
    api_key: str | None = None
    wait_seconds: float = DEFAULT_WAIT_SECONDS  # default of the tools' wait_seconds argument
    http_timeout: float = 30.0  # bounds each HTTP request to the server, not a whole generation
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"  # to stderr: stdout is MCP's


@dataclass(frozen=True)
class ServerInfo:
    """The parts of GET /api/info the tools use; the defaults are the server's own, for when it is unreachable."""

    model: str | None = None
    label: str | None = None
    demo: bool = False
    default_steps: int | None = None
    min_side: int = 64
    max_side: int = 2560
    size_step: int = 16
    max_pixels: int = 6_553_600
    max_steps: int = 100
    max_prompt_chars: int = 4000
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP")
    supports_negative_prompt: bool | None = None
    known: bool = False  # False: the server did not answer, these are the defaults
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerInfo:
        defaults = cls()

        def number(key: str, default: int) -> int:
            value = data.get(key)
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default

        formats = data.get("formats")
        if not (isinstance(formats, list) and formats):
            formats = defaults.formats
        return cls(
            model=data.get("model"),
            label=data.get("label"),
            demo=bool(data.get("demo", False)),
            default_steps=data.get("default_steps") if isinstance(data.get("default_steps"), int) else None,
            min_side=number("min_side", defaults.min_side),
            max_side=number("max_side", defaults.max_side),
            size_step=number("size_step", defaults.size_step),
            max_pixels=number("max_pixels", defaults.max_pixels),
            max_steps=number("max_steps", defaults.max_steps),
            max_prompt_chars=number("max_prompt_chars", defaults.max_prompt_chars),
            formats=tuple(str(f).upper() for f in formats),
            supports_negative_prompt=data.get("supports_negative_prompt"),
            known=True,
            raw=data,
        )
