"""The protocol's messages as JSON, for workers on other machines (through Redis).

Pickle would run whatever a writer to Redis put there; JSON carries data only. Each dataclass is tagged with its
name, and only the classes listed here can be made from the wire: the protocol's messages and the values they
hold. Tuples, enums and optional fields are rebuilt from the dataclasses' own type hints.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from functools import cache
from typing import Any

from core.models import Lora, Variant
from core.tasks import Composite, GenerationParams, OutputSpec
from worker import protocol

TAG = "~"
WIRE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        *typing.get_args(protocol.ToWorker),
        *typing.get_args(protocol.FromWorker),
        protocol.WorkerExited,
        protocol.Holding,
        Variant,
        Lora,
        GenerationParams,
        OutputSpec,
        Composite,
    )
}


class WireError(ValueError):
    """What arrived is not a message of this protocol."""


def encode(message: object) -> str:
    return json.dumps(_plain(message), separators=(",", ":"))


def decode(text: str | bytes) -> Any:
    try:
        return _build(json.loads(text), Any)
    except (TypeError, ValueError, KeyError) as error:
        raise WireError(f"not a protocol message: {error}") from error


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__name__ not in WIRE_TYPES:
            raise WireError(f"{type(value).__name__} does not travel on the wire")
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: type(value).__name__, **fields}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise WireError(f"{type(value).__name__} does not travel on the wire")


def _build(value: object, hint: object) -> Any:
    if isinstance(value, dict) and TAG in value:
        cls = WIRE_TYPES.get(value[TAG])
        if cls is None:
            raise WireError(f"unknown type {value[TAG]!r}")
        hints = _hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: _build(item, hints[name]) for name, item in value.items() if name in known})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _build(value, next(arg for arg in args if arg is not type(None)))
    if origin is tuple and isinstance(value, list):
        item_hint = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        if item_hint is Any and args and args[-1] is not Ellipsis:  # a fixed-length tuple, e.g. a box
            return tuple(_build(item, arg) for item, arg in zip(value, args, strict=True))
        return tuple(_build(item, item_hint) for item in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)
