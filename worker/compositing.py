"""A masked task's last step, after the engine: its picture joined to the input through the mask, so that what is
not masked stays the input picture, exactly (a model's VAE round trip alone would shift every pixel a little)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from core.tasks import Composite


def join(generated: Image.Image, composite: Composite, inputs_dir: str) -> Image.Image:
    """The input picture with the engine's pixels where the mask is white (blended where it is grey). With a
    box, the engine rendered only that area, at the whole size: it is scaled back into its place first."""
    folder = Path(inputs_dir)
    with Image.open(folder / composite.base) as opened:
        base = opened.convert("RGB")
    with Image.open(folder / composite.mask) as opened:
        mask = opened.convert("L")
    picture = generated.convert("RGB")
    if composite.box is not None:
        left, top, right, bottom = composite.box
        placed = base.copy()
        placed.paste(picture.resize((right - left, bottom - top), Image.Resampling.LANCZOS), (left, top))
        picture = placed
    if picture.size != base.size:  # an engine that rounded the size differently: the input's size wins
        picture = picture.resize(base.size, Image.Resampling.LANCZOS)
    return Image.composite(picture, base, mask)
