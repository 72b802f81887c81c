"""Previews of the running task from mflux's in-loop latents: a cheap linear projection to RGB, no VAE decode."""

from __future__ import annotations

import numpy as np
from PIL import Image

from worker.engines.mflux.family import Preview

PREVIEW_MAX_SIDE = 128  # previews are thumbnails; 1/8 of a 1024 px side

# Linear latent-to-RGB projections, one row per latent channel, plus a bias; the result is in [-1, 1].
# These are the published fits ComfyUI (comfy/latent_formats.py: Flux, Flux2, Wan21) and InvokeAI use
# for their step previews. They apply to latents in model space (already scaled and shifted, or
# normalised, for the transformer), which is what mflux's loop holds: its VAEs undo that in `decode`.
# Z-Image decodes with the FLUX.1 VAE; Qwen-Image and Krea 2 with the Qwen-Image (Wan 2.1) VAE.
LATENT_RGB_FACTORS: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    "flux1": (
        (
            (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
            (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
            (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
            (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
            (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
            (-0.1262, -0.0982, -0.0778),
        ),
        (-0.0329, -0.0718, -0.0851),
    ),
    "flux2": (
        (
            (0.0058, 0.0113, 0.0073), (0.0495, 0.0443, 0.0836), (-0.0099, 0.0096, 0.0644),
            (0.2144, 0.3009, 0.3652), (0.0166, -0.0039, -0.0054), (0.0157, 0.0103, -0.0160),
            (-0.0398, 0.0902, -0.0235), (-0.0052, 0.0095, 0.0109), (-0.3527, -0.2712, -0.1666),
            (-0.0301, -0.0356, -0.0180), (-0.0107, 0.0078, 0.0013), (0.0746, 0.0090, -0.0941),
            (0.0156, 0.0169, 0.0070), (-0.0034, -0.0040, -0.0114), (0.0032, 0.0181, 0.0080),
            (-0.0939, -0.0008, 0.0186), (0.0018, 0.0043, 0.0104), (0.0284, 0.0056, -0.0127),
            (-0.0024, -0.0022, -0.0030), (0.1207, -0.0026, 0.0065), (0.0128, 0.0101, 0.0142),
            (0.0137, -0.0072, -0.0007), (0.0095, 0.0092, -0.0059), (0.0000, -0.0077, -0.0049),
            (-0.0465, -0.0204, -0.0312), (0.0095, 0.0012, -0.0066), (0.0290, -0.0034, 0.0025),
            (0.0220, 0.0169, -0.0048), (-0.0332, -0.0457, -0.0468), (-0.0085, 0.0389, 0.0609),
            (-0.0076, 0.0003, -0.0043), (-0.0111, -0.0460, -0.0614),
        ),
        (-0.0329, -0.0718, -0.0851),
    ),
    "wan21": (
        (
            (-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747),
            (0.0372, 0.2344, 0.1420), (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665),
            (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975), (-0.0412, 0.0267, -0.1364),
            (-0.1293, 0.0740, 0.1636), (0.0680, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
            (-0.1251, 0.0927, 0.1699), (0.0060, -0.0633, 0.0005), (0.3477, 0.2275, 0.2950),
            (0.1984, 0.0913, 0.1861),
        ),
        (-0.1835, -0.0868, -0.3360),
    ),
}  # fmt: skip


def latents_to_preview(latents: np.ndarray, preview: Preview, height: int, width: int) -> Image.Image:
    """A small RGB picture of in-loop latents: one pixel per latent pixel, at most PREVIEW_MAX_SIDE a side."""
    grid = _latent_grid(latents, preview, height, width)
    step = max(1, -(-max(grid.shape[:2]) // PREVIEW_MAX_SIDE))
    grid = grid[::step, ::step]
    factors = LATENT_RGB_FACTORS.get(preview.rgb) if preview.rgb else None
    if preview.layout == "pixels":
        rgb_values = (grid[..., :3] + 1) / 2  # pixel-space models hold the image itself, in [-1, 1]
    elif factors is not None and len(factors[0]) == grid.shape[-1]:
        matrix, bias = factors
        rgb_values = (grid @ np.asarray(matrix, dtype=np.float32) + np.asarray(bias, dtype=np.float32) + 1) / 2
    else:  # no published projection for this latent space: show its first three channels, stretched
        first = grid[..., :3]
        low, high = first.min(axis=(0, 1)), first.max(axis=(0, 1))
        rgb_values = (first - low) / np.maximum(high - low, 1e-6)
    pixels = (np.clip(rgb_values, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def _latent_grid(latents: np.ndarray, preview: Preview, height: int, width: int) -> np.ndarray:
    """(rows, cols, channels) from any of mflux's latent layouts."""
    layout = preview.layout
    if layout == "packed":
        # (1, rows/2 * cols/2, channels * 4): each token is a 2x2 patch, flattened channel-major.
        rows, cols = height // 16, width // 16
        patches = latents.reshape(rows, cols, -1, 2, 2)
        return patches.transpose(0, 3, 1, 4, 2).reshape(rows * 2, cols * 2, patches.shape[2])
    if layout == "patched":
        # (1, channels * 4, rows/2, cols/2): the same 2x2 patches, kept spatial.
        rows, cols = height // 16, width // 16
        patches = latents.reshape(-1, 2, 2, rows, cols)
        return patches.transpose(3, 1, 4, 2, 0).reshape(rows * 2, cols * 2, patches.shape[0])
    if layout == "spatial":
        # channels by (rows, cols) with size-1 batch/frame axes around them: (16, 1, r, c) or (1, 16, r, c).
        rows, cols = height // preview.scale, width // preview.scale
        return latents.reshape(-1, rows, cols).transpose(1, 2, 0)
    if layout == "tokens":
        # (1, rows * cols, channels): one token per latent pixel, unpatched.
        rows, cols = height // preview.scale, width // preview.scale
        return latents.reshape(rows, cols, -1)
    if layout == "pixels":
        return latents.reshape(-1, height, width).transpose(1, 2, 0)
    raise ValueError(f"no preview for latent layout {layout!r}")
