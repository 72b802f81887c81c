"""Marshmallow fields shared by the APIs: how loosely typed JSON values become typed request values.

They parse; they do not judge. Ranges and limits are core/rules.py's, enforced by the service.
"""

from __future__ import annotations

from marshmallow import ValidationError, fields

from core.rules import MAX_SEED
from core.tasks import ImageFormat

# A 4,301-digit integer cannot even be turned back into text (Python's int-to-str limit); no field needs more.
MAX_DIGITS = 40


class Seed(fields.Field):
    """An integer or a string of digits (the original server took strings); -1, "" or null mean random."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.strip() in ("", "-1"):
            return None
        if isinstance(value, bool):
            raise ValidationError("Must be an integer or a string of digits.")
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
