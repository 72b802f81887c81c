"""The protocol's messages as JSON for workers on other machines (worker/wire.py): every message survives the
trip whole, and nothing but the protocol's own types can be made from the wire."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from core.models import Lora, Variant
from core.tasks import Composite, GenerationParams, ImageFormat, OutputSpec
from worker import protocol, wire

PARAMS = GenerationParams("a fox", 7, 512, 384, 4, 3.5, "blurry", "init.png", 0.4, ("ref-0.png",), "mask.png",
                          1000, Composite("base.png", "composite-mask.png", (0, 0, 256, 384)))  # fmt: skip
VARIANT = Variant("dev", 8, (Lora("ghibli", "/loras/ghibli.safetensors", 0.8),), "/weights/dev")
EXAMPLES = {
    protocol.Preload: protocol.Preload(VARIANT),
    protocol.Submit: protocol.Submit("0123456789abcdef", VARIANT, PARAMS, OutputSpec(ImageFormat.PNG, 90), "/i", "/in"),
    protocol.Cancel: protocol.Cancel("0123456789abcdef"),
    protocol.Shutdown: protocol.Shutdown(),
    protocol.Announce: protocol.Announce(),
    protocol.Ready: protocol.Ready("demo"),
    protocol.EngineFailed: protocol.EngineFailed("no GPU"),
    protocol.Loading: protocol.Loading("dev@q8", 12.5),
    protocol.Loaded: protocol.Loaded("dev@q8", 3.0, ("schnell",)),
    protocol.LoadFailed: protocol.LoadFailed("dev@q8", "weights missing"),
    protocol.Started: protocol.Started("0123456789abcdef", 1.0),
    protocol.Rendered: protocol.Rendered("0123456789abcdef", 2.0, 1.0, 0.2, 0.1, 0.8, 0.1, 4, True, False),
    protocol.Finished: protocol.Finished("0123456789abcdef", 3.0, 1234, 0.05),
    protocol.Failed: protocol.Failed("0123456789abcdef", 3.0, "generation", "boom"),
    protocol.Cancelled: protocol.Cancelled("0123456789abcdef", 3.0),
    protocol.Log: protocol.Log(30, "careful", "0123456789abcdef"),
    protocol.WorkerExited: protocol.WorkerExited(-9, True),
    protocol.Holding: protocol.Holding("0123456789abcdef"),
}


def test_every_message_type_has_an_example():
    types = {*typing.get_args(protocol.ToWorker), *typing.get_args(protocol.FromWorker),
             protocol.WorkerExited, protocol.Holding}  # fmt: skip
    assert types == set(EXAMPLES)


@pytest.mark.parametrize("message", EXAMPLES.values(), ids=lambda m: type(m).__name__)
def test_a_message_survives_the_wire_whole(message):
    again = wire.decode(wire.encode(message))
    assert again == message and type(again) is type(message)
    for name in (f.name for f in dataclasses.fields(message)):
        assert type(getattr(again, name)) is type(getattr(message, name))  # tuples stay tuples, enums enums


def test_only_the_protocols_types_can_be_made():
    with pytest.raises(wire.WireError):
        wire.decode(json.dumps({"~": "Popen", "args": ["rm", "-rf", "/"]}))
    with pytest.raises(wire.WireError):
        wire.decode(b"\x80not json")
    with pytest.raises(wire.WireError):
        wire.encode(object())
