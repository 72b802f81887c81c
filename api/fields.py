"""Marshmallow fields shared by the APIs: how loosely typed JSON values become typed request values.

They parse; they do not judge. Ranges and limits are core/rules.py's, enforced by the service.
"""

from __future__ import annotations

import base64
import binascii

from marshmallow import ValidationError, fields

from core.rules import MAX_SEED
from core.tasks import ImageFormat

# A 4,301-digit integer cannot even be turned back into text (Python's int-to-str limit); no field needs more.
MAX_DIGITS = 40


class TooLongNumber:
    """An integer literal of more digits than Python reads: kept in its place, so that the field it was sent
    in refuses it by name ("Not a valid integer.") and a field nobody reads ignores it, as any other value."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def _refuse(self):  # int(), float() and indexing all fail, so every numeric field refuses it by name
        raise ValueError(f"an integer of {self.digits} digits")

    __int__ = __index__ = __float__ = _refuse

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"


class Seed(fields.Field):
    """An integer or a string of digits (the original server took strings); -1, "" or null mean random."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.strip() in ("", "-1"):
            return None
        if isinstance(value, bool):
            raise ValidationError("Must be an integer or a string of digits.")
        if isinstance(value, TooLongNumber):
            raise ValidationError(f"Must be between 0 and {MAX_SEED}, or -1 for a random seed.")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        # isdecimal, not isdigit: "²" is a digit that int() refuses (it was a 500); decimal digits are what int() reads
        if isinstance(value, str) and value.strip().isdecimal():
            if len(value.strip()) > MAX_DIGITS:
                raise ValidationError(f"Must be between 0 and {MAX_SEED}, or -1 for a random seed.")
            value = int(value.strip())
        if not isinstance(value, int):
            raise ValidationError("Must be an integer or a string of digits.")
        return None if value == -1 else value

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class WholeNumber(fields.Integer):
    """An integer, or a string of digits; 512.5 is refused rather than silently truncated."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise self.make_error("invalid")
        if isinstance(value, str) and len(value.strip()) > MAX_DIGITS:
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Format(fields.String):
    """JPEG, PNG or WEBP, in any case ("jpg" too)."""

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs).strip().upper()
        name = {"JPG": "JPEG"}.get(name, name)
        try:
            return ImageFormat(name)
        except ValueError:
            raise ValidationError("Must be one of JPEG, PNG, WEBP.") from None


class Base64Image(fields.Field):
    """An image file as base64 text, with or without a `data:image/…;base64,` prefix (browsers' FileReader adds
    one, the original web UI strips it, A1111 clients send either). Whether the bytes are an image is
    core/inputs.py's to judge. `empty_is_none`: "" means no image, as null does (a form's empty field)."""

    def __init__(self, *, empty_is_none: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.empty_is_none = empty_is_none

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("Must be an image as base64 text (PNG, JPEG or WEBP), or null.")
        text = value.strip()
        if not text and self.empty_is_none:
            return None
        if text.startswith("data:"):
            header, comma, text = text.partition(",")
            if not comma or not header.endswith(";base64"):
                raise ValidationError("A data: URL must be base64, as in data:image/png;base64,….")
        if text.startswith(("http://", "https://")):
            raise ValidationError("Send the image itself as base64: this server does not fetch URLs.")
        try:
            decoded = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("Not valid base64.") from None
        if not decoded:
            raise ValidationError("Empty: send an image (PNG, JPEG or WEBP), or null.")
        return decoded

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else base64.b64encode(value).decode("ascii")


BASE64_IMAGE_DOC = {"type": "string", "format": "byte", "minLength": 1,
                    "description": "An image (PNG, JPEG, WEBP) as base64."}  # fmt: skip
