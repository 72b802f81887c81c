"""What a client asks for, in the one shape every API translates into."""

from __future__ import annotations

from dataclasses import dataclass

from core.tasks import ImageFormat


@dataclass(frozen=True)
class GenerationRequest:
    """One image as a client asked for it; None means "the server's or the model's default"."""

    prompt: str
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    format: ImageFormat = ImageFormat.JPEG
    quality: int = 85
    priority: bool = False


@dataclass(frozen=True)
class Caller:
    """Who asks: `client` tells clients apart for per-client limits; `admin` may see and manage every task."""

    client: str = ""
    admin: bool = True
