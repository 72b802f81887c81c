"""The demo engine's pictures: deterministic procedural patterns, labelled as such in their pixels."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.tasks import GenerationParams

CAPTION = "DEMO ENGINE - not an image model"


def digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def render(params: GenerationParams) -> Image.Image:
    """The finished picture: colours and shapes from the prompt, their arrangement from the seed."""
    width, height = params.width, params.height
    palette = np.frombuffer(digest("palette", params.prompt)[:12], dtype=np.uint8).reshape(4, 3).astype(np.float32)
    shape = np.frombuffer(digest("shape", params.prompt, params.seed), dtype=np.uint8).astype(np.float32) / 255.0

    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    field = np.zeros((height, width), dtype=np.float32)
    for i in range(4):
        fx, fy, phase, weight = (
            2 + 9 * shape[4 * i],
            2 + 9 * shape[4 * i + 1],
            6.3 * shape[4 * i + 2],
            shape[4 * i + 3],
        )
        field += (0.3 + weight) * np.sin(fx * x * np.pi + phase) * np.cos(fy * y * np.pi + phase * 0.7)
    cx, cy = shape[16], shape[17]
    field += 1.5 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.02 + 0.1 * shape[18]))
    t = (field - field.min()) / max(float(np.ptp(field)), 1e-6) * 3.0
    low = np.clip(np.floor(t).astype(np.int32), 0, 2)
    frac = (t - low)[..., None]
    pixels = palette[low] * (1.0 - frac) + palette[low + 1] * frac

    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def label(image: Image.Image, params: GenerationParams, model: str) -> Image.Image:
    """Every demo picture says what it is, in its pixels."""
    caption(image, [CAPTION, f"{model} · seed {params.seed}", params.prompt[:60]])
    return image


def caption(image: Image.Image, lines: list[str]) -> None:
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, image.width, 12 * len(lines) + 6), fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 3 + 12 * i), line, fill=(255, 255, 255))


def noise_image(params: GenerationParams) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(digest("noise", params.seed)[:8], "big"))
    return rng.integers(0, 256, size=(max(params.height // 16, 1), max(params.width // 16, 1), 3), dtype=np.uint8)


def partial(noise: np.ndarray, final: Image.Image, fraction: float) -> Image.Image:
    """What the image looks like `fraction` of the way through denoising (a small preview)."""
    small = final.resize((noise.shape[1], noise.shape[0]), Image.Resampling.BILINEAR)
    mixed = np.asarray(small, dtype=np.float32) * fraction + noise.astype(np.float32) * (1.0 - fraction)
    return Image.fromarray(mixed.astype(np.uint8), "RGB")


def open_rgb(path: str, size: tuple[int, int] | None = None) -> Image.Image:
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    return image if size is None or image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def from_image(start: Image.Image, target: Image.Image, kept: float) -> Image.Image:
    """img2img: `kept` of the start picture (mflux's image_strength), the rest the procedural one."""
    return Image.blend(target, start, kept)


def edited(references: list[Image.Image], target: Image.Image) -> Image.Image:
    """An edit: the first reference, tinted by the procedural picture, the others as insets along the bottom."""
    result = Image.blend(references[0], target, 0.35)
    side = max(result.height // 5, 16)
    for index, reference in enumerate(references[1:]):
        inset = reference.resize((side, side), Image.Resampling.BILINEAR)
        result.paste(inset, (4 + index * (side + 4), result.height - side - 4))
    return result


def upscaled(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An upscale: the picture enlarged and sharpened, nothing invented."""
    return picture.resize(size, Image.Resampling.LANCZOS).filter(ImageFilter.UnsharpMask(radius=2, percent=60))


def start_of(noise: np.ndarray, start: Image.Image, kept: float) -> np.ndarray:
    """img2img's first preview: the start picture under as much noise as the steps that run will remove."""
    small = np.asarray(start.resize((noise.shape[1], noise.shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)
    return (small * kept + noise.astype(np.float32) * (1.0 - kept)).astype(np.uint8)


def open_mask(path: str, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as opened:
        mask = opened.convert("L")
    return mask if mask.size == size else mask.resize(size, Image.Resampling.NEAREST)
