"""Input images, from the bytes a client sent to the files a task keeps: decoded and checked against the limits,
turned upright, brought to the output size, masks translated from each API's convention — once, at submit, so
that the worker and the engine only ever open small, well-formed PNGs.

Every problem is an `InvalidRequest` naming the field (`init_images.1`, `mask_image`), which each API maps back
onto its own names. Pillow's own decompression-bomb check stays on as a backstop; the limits here refuse an
image by its header, before a pixel is decoded.
"""

from __future__ import annotations

import io
import math
import random
import warnings
from dataclasses import dataclass, replace

from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from core.errors import InvalidRequest
from core.models import ModelInfo, ModelKind
from core.submissions import GenerationRequest, MaskedContent, MaskMeaning, MaskRequest, Resize
from core.tasks import Composite, GenerationParams

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
MB = 1024 * 1024
INIT, MASK, BASE, COMPOSITE_MASK = "init.png", "mask.png", "base.png", "composite-mask.png"
GREY = (128, 128, 128)


@dataclass(frozen=True)
class Decoded:
    """The request's images, decoded and upright: `images` in the order sent (RGB or RGBA), the mask as
    greyscale with white where the picture is repainted."""

    images: tuple[Image.Image, ...]
    mask: Image.Image | None

    @property
    def first_size(self) -> tuple[int, int] | None:
        return self.images[0].size if self.images else None


@dataclass(frozen=True)
class Prepared:
    """A task's input files (name → PNG bytes) and the parameters that name them."""

    files: dict[str, bytes]
    params: GenerationParams

    @property
    def stored_bytes(self) -> int:
        return sum(len(data) for data in self.files.values())


def decode_request(request: GenerationRequest, max_bytes: int, max_side: int) -> Decoded:
    """Every image of the request decoded and checked, or an InvalidRequest naming each one at fault."""
    problems: dict[str, list[str]] = {}
    images = []
    for index, data in enumerate(request.init_images):
        field = "init_image" if len(request.init_images) == 1 else f"init_images.{index}"
        try:
            images.append(decode(data, field, max_bytes, max_side))
        except InvalidRequest as error:
            problems |= error.problems
    mask = None
    if request.mask is not None and request.mask.if_transparent:  # OpenAI: the first image's transparency
        first = images[0] if images else None
        if first is not None and first.mode == "RGBA" and first.getchannel("A").getextrema()[0] < 255:
            mask = mask_from(request.mask, first)
    elif request.mask is not None:
        try:
            mask = mask_from(request.mask, decode(request.mask.data, "mask_image", max_bytes, max_side))
        except InvalidRequest as error:
            problems |= error.problems
    if problems:
        raise InvalidRequest(problems)
    return Decoded(tuple(images), mask)


def decode(data: bytes, field: str, max_bytes: int, max_side: int) -> Image.Image:
    """One image file: PNG, JPEG or WEBP within the limits, EXIF orientation applied, in RGB or RGBA."""
    if not data:
        raise InvalidRequest({field: ["Empty: send an image (PNG, JPEG or WEBP)."]})
    if len(data) > max_bytes:
        raise InvalidRequest({field: [f"The image is {len(data) / MB:.1f} MB; at most {max_bytes / MB:g} MB."]})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidRequest({field: [f"Not a PNG, JPEG or WEBP image{_named_format(data)}."]}) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest({field: [f"The image has too many pixels; at most {max_side}×{max_side}."]}) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InvalidRequest({field: [f"The image data is corrupt ({error})."]}) from None
    width, height = image.size
    if max(width, height) > max_side or width * height > max_side * max_side:
        raise InvalidRequest({field: [f"The image is {width}×{height}; at most {max_side} pixels a side."]})
    if width < 1 or height < 1:
        raise InvalidRequest({field: ["The image has no pixels."]})
    try:
        image.load()  # truncated data raises here (Pillow does not fill in missing rows unless told to)
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise InvalidRequest({field: [f"The image data is truncated or corrupt ({error})."]}) from None
    return _rgb_or_rgba(image)


def _named_format(data: bytes) -> str:
    """What the data is, if Pillow knows it (a GIF, a TIFF …), for a clearer refusal."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f": it is {image.format}" if image.format else ""
    except Exception:  # anything unreadable is simply "not an image"
        return ""


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Alpha kept where there is any (it may be OpenAI's mask), everything else (palette, 16-bit, CMYK,
    greyscale) as RGB."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if image.mode in ("I;16", "I;16B", "I", "F"):  # 16-bit and float greyscale: scale to 8 bits first
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGBA" if has_alpha else "RGB")


def mask_from(request: MaskRequest, image: Image.Image) -> Image.Image:
    """The mask in our convention: greyscale, white where the picture is repainted."""
    if request.meaning is MaskMeaning.TRANSPARENT:  # OpenAI: the transparent pixels are edited
        if image.mode != "RGBA":
            raise InvalidRequest({"mask_image": ["The mask must be a PNG with transparency (transparent = edited)."]})
        mask = ImageOps.invert(image.getchannel("A"))
    elif image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < 255:  # A1111: an alpha mask's opacity
        mask = image.getchannel("A")
    else:
        mask = image.convert("L")
    return ImageOps.invert(mask) if request.invert else mask


# -- bringing the inputs to the task ---------------------------------------------------------------------------


def prepare(request: GenerationRequest, decoded: Decoded, params: GenerationParams, model: ModelInfo) -> Prepared:
    """The files a task keeps and the parameters naming them, for `params`' size (already decided)."""
    if not decoded.images:
        return Prepared({}, params)
    size = (params.width, params.height)
    files: dict[str, bytes] = {}
    if model.kind is ModelKind.UPSCALE:  # the upscaler reads the picture as it is, at its own size
        files[INIT] = png(flatten(decoded.images[0]))
        return Prepared(files, _with(params, init_image=INIT))
    if model.kind is ModelKind.EDIT:
        references = []
        for index, image in enumerate(decoded.images):
            reference = flatten(_at_most(image, params.pixels))
            files[f"reference-{index}.png"] = png(reference)
            references.append((f"reference-{index}.png", reference.width * reference.height))
        names, pixels = tuple(name for name, _ in references), sum(count for _, count in references)
        params = _with(params, references=names, reference_pixels=pixels)
        start = flatten(fit(decoded.images[0], size, request.resize))
    else:
        start = flatten(fit(decoded.images[0], size, request.resize))
        files[INIT] = png(start)
        params = _with(params, init_image=INIT)
    if decoded.mask is None or request.mask is None:  # (or OpenAI's "the image's transparency", and it had none)
        if model.kind is ModelKind.INPAINT:
            raise InvalidRequest({"mask_image": [f"The model {model.name} repaints a masked area: send a mask."]})
        return Prepared(files, params)
    return _masked(request.mask, fit(decoded.mask, size, request.resize).convert("L"), start, files, params, model)


def _masked(
    spec: MaskRequest, mask: Image.Image, start: Image.Image, files: dict[str, bytes], params: GenerationParams,
    model: ModelInfo,
) -> Prepared:  # fmt: skip
    """A masked task: what the engine starts from (pre-filled, perhaps only the masked area), the mask it is given
    where it takes one, and how the worker joins its picture to the input afterwards."""
    sharp = mask.point(lambda value: 255 if value > 127 else 0)
    if sharp.getbbox() is None:
        raise InvalidRequest({"mask_image": ["The mask marks nothing to repaint (it is black, or opaque)."]})
    feathered = sharp.filter(ImageFilter.GaussianBlur(spec.blur)) if spec.blur > 0 else sharp
    files[BASE], files[COMPOSITE_MASK] = png(start), png(feathered)
    engine_start, engine_mask = _prefilled(start, sharp, spec.content, params.seed), sharp
    box = None
    if spec.crop_padding is not None:  # A1111's "only masked": render the masked area at the full size
        box = crop_box(sharp, spec.crop_padding, start.size)
        engine_start = engine_start.crop(box).resize(start.size, Image.Resampling.LANCZOS)
        engine_mask = sharp.crop(box).resize(start.size, Image.Resampling.NEAREST)
    composite = Composite(BASE, COMPOSITE_MASK, box)
    if model.kind is ModelKind.EDIT:
        first = params.references[0]
        files[first] = png(engine_start)  # an edit changes the first reference: start it as the mask says
        params = _with(params, composite=composite)
    else:
        files[INIT] = png(engine_start)
        params = _with(params, composite=composite)
    if model.takes_mask:
        files[MASK] = png(engine_mask)
        params = _with(params, mask=MASK)
    return Prepared(files, params)


def _prefilled(image: Image.Image, mask: Image.Image, content: MaskedContent, seed: int) -> Image.Image:
    """What the masked area starts as (A1111's inpainting_fill, in pixels rather than latents)."""
    if content is MaskedContent.ORIGINAL:
        return image
    if content is MaskedContent.FILL:  # the surroundings, blurred until they cover the hole
        radius = max(image.size) / 8
        fill = image.filter(ImageFilter.GaussianBlur(radius))
    elif content is MaskedContent.NOISE:
        rng = random.Random(seed)
        fill = Image.frombytes("RGB", image.size, rng.randbytes(image.width * image.height * 3))
    else:
        fill = Image.new("RGB", image.size, GREY)
    return Image.composite(fill, image, mask)


def crop_box(mask: Image.Image, padding: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The masked area with `padding` around it, grown to the output's aspect ratio (as A1111 does), inside it."""
    left, top, right, bottom = mask.getbbox() or (0, 0, *size)
    left, top = max(left - padding, 0), max(top - padding, 0)
    right, bottom = min(right + padding, size[0]), min(bottom + padding, size[1])
    width, height = right - left, bottom - top
    ratio = size[0] / size[1]
    if width / height < ratio:  # too tall: widen
        width = min(math.ceil(height * ratio), size[0])
    else:
        height = min(math.ceil(width / ratio), size[1])
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    left = int(min(max(centre_x - width / 2, 0), size[0] - width))
    top = int(min(max(centre_y - height / 2, 0), size[1] - height))
    return left, top, left + width, top + height


def fit(image: Image.Image, size: tuple[int, int], resize: Resize) -> Image.Image:
    """The image at `size`, as A1111's resize modes do it."""
    if image.size == size:
        return image
    method = Image.Resampling.NEAREST if image.mode == "L" and _is_binary(image) else Image.Resampling.LANCZOS
    if resize is Resize.CROP:
        return ImageOps.fit(image, size, method)
    if resize is Resize.FILL:
        inner = ImageOps.contain(image, size, method)
        canvas = image.resize(size, method)  # the stretched picture shows at the edges, as A1111's fill
        canvas.paste(inner, ((size[0] - inner.width) // 2, (size[1] - inner.height) // 2))
        return canvas
    return image.resize(size, method)


def _is_binary(image: Image.Image) -> bool:
    colours = image.getcolors(2)
    return colours is not None


def flatten(image: Image.Image) -> Image.Image:
    """RGB for the engine: transparent areas become white (mflux would otherwise see whatever colour hides there)."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def _at_most(image: Image.Image, pixels: int) -> Image.Image:
    """A reference no larger than the picture made: edit models read it beside it, at a cost per pixel."""
    if image.width * image.height <= pixels:
        return image
    scale = math.sqrt(pixels / (image.width * image.height))
    return image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.Resampling.LANCZOS)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # written once, read once: speed over size
    return buffer.getvalue()


def _with(params: GenerationParams, **changes: object) -> GenerationParams:
    return replace(params, **changes)
