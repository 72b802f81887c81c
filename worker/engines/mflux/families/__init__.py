"""Every mflux model family the server runs, one module per family as mflux keeps them (mflux/models/<family>/)."""

from __future__ import annotations

from worker.engines.mflux.families import (
    anima,
    boogu,
    ernie,
    fibo,
    fibo2,
    flux1,
    flux2,
    flux3,
    ideogram4,
    iris,
    krea2,
    lens,
    ming,
    moss,
    qwen,
    qwen21,
    seedvr2,
    z_image,
)
from worker.engines.mflux.family import Family

_MODULES = (flux1, flux2, flux3, z_image, qwen, qwen21, krea2, fibo, fibo2, ernie, ideogram4, iris, lens, ming, moss,
            boogu, anima, seedvr2)  # fmt: skip
FAMILIES: tuple[Family, ...] = tuple(family for module in _MODULES for family in module.FAMILIES)

# Registry entries the server does not serve: ControlNet, Redux, Depth and try-on variants need inputs of their own
# (control images, depth maps, garment images) that none of the server's APIs carries.
NOT_SERVED = frozenset({
    "dev-redux", "dev-depth", "dev-controlnet-canny", "schnell-controlnet-canny", "dev-controlnet-upscaler",
    "dev-fill-catvton", "krea-2-controlnet-depth", "z-image-turbo-controlnet-union-2.1",
    "qwen-image-2.1-turbo-controlnet-union", "qwen-image-2.1-controlnet-union",
})  # fmt: skip
