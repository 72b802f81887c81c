"""core/rules.py, in process: every limit's boundary, every message a client reads, and how a request becomes
the parameters an engine runs. (The same rules through the HTTP APIs: tests/test_limit_boundaries.py.)"""

from __future__ import annotations

import dataclasses
import re

import pytest

from core import rules
from core.rules import MAX_SEED, Limits
from core.submissions import GenerationRequest

LIMITS = Limits()


@pytest.fixture
def info(parts):
    """The demo engine's description, as the server has it (default steps 4, guidance 3.5, sizes of 16)."""
    return parts.catalog.get(parts.scheduler.default_variant.model)


# -- the limits themselves ---------------------------------------------------------------------------------


def test_the_default_limits():
    assert (LIMITS.min_side, LIMITS.max_side, LIMITS.max_pixels) == (64, 2560, 2560 * 2560)
    assert (LIMITS.max_steps, LIMITS.max_prompt_chars, LIMITS.max_images_per_request) == (100, 4000, 4)
    assert (LIMITS.max_waiting, LIMITS.max_waiting_per_client) == (10_000, 1_000)


def test_the_default_side_is_1024_or_the_nearest_the_limits_allow():
    assert LIMITS.default_side == 1024
    assert Limits(max_side=512).default_side == 512
    assert Limits(min_side=2048).default_side == 2048
    assert Limits(max_side=1024).default_side == 1024


def test_sides_are_clamped_into_the_range():
    assert [LIMITS.clamp_side(side) for side in (0, 63, 64, 65, 1000, 2560, 2561, 10**6)] == [
        64, 64, 64, 65, 1000, 2560, 2560, 2560,
    ]  # fmt: skip


def test_the_options_are_the_limits_with_help_text_in_declaration_order():
    options = list(rules.options())
    assert [f.name for f in options] == [
        "max_side", "max_pixels", "max_steps", "max_prompt_chars", "max_images_per_request", "max_waiting",
        "max_waiting_per_client", "max_input_mb", "max_input_side", "max_input_images",
    ]  # fmt: skip
    assert all(f.metadata["help"] for f in options)
    assert "min_side" not in {f.name for f in options}  # not a server option
    assert rules.option("some help") == {"help": "some help"}


def test_ranges_follow_the_limits():
    assert rules.ranges(Limits(min_side=32, max_side=999, max_steps=7)) == {
        "width": (32, 999), "height": (32, 999), "steps": (1, 7), "guidance": (0.0, 30.0), "quality": (1, 100),
        "seed": (0, MAX_SEED),
    }  # fmt: skip
    assert MAX_SEED == 2**32 - 1


# -- range problems ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "inside", "outside"),
    [
        ("width", (64, 65, 2559, 2560), (63, 2561, 0, -1)),
        ("height", (64, 2560), (63, 2561)),
        ("steps", (1, 2, 99, 100), (0, 101, -5)),
        ("guidance", (0.0, 0.1, 29.9, 30.0), (-0.01, 30.01)),
        ("quality", (1, 100), (0, 101)),
        ("seed", (0, 1, MAX_SEED), (-1, MAX_SEED + 1)),
    ],
)
def test_range_boundaries_are_inclusive(name, inside, outside):
    for value in inside:
        assert rules.range_problem(name, value, LIMITS) is None, (name, value)
    for value in outside:
        assert rules.range_problem(name, value, LIMITS), (name, value)


def test_range_messages_say_the_range_and_its_unit():
    assert rules.range_problem("width", 10_000, LIMITS) == "Must be between 64 and 2560 pixels."
    assert rules.range_problem("height", 1, LIMITS) == "Must be between 64 and 2560 pixels."
    assert rules.range_problem("steps", 0, LIMITS) == "Must be between 1 and 100."
    assert rules.range_problem("guidance", 31, LIMITS) == "Must be between 0 and 30."
    assert rules.range_problem("quality", 0, LIMITS) == "Must be between 1 and 100."
    assert rules.range_problem("seed", -2, LIMITS) == "Must be between 0 and 4294967295, or -1 for a random seed."
    assert rules.range_problem("steps", 9, Limits(max_steps=8)) == "Must be between 1 and 8."


# -- text --------------------------------------------------------------------------------------------------


def test_text_problems():
    assert rules.text_problem("a fox", LIMITS, required=True) is None
    assert rules.text_problem("", LIMITS, required=True) == "Must not be empty."
    assert rules.text_problem(" \t\n\u3000", LIMITS, required=True) == "Must not be empty."
    assert rules.text_problem("", LIMITS, required=False) is None
    assert rules.text_problem("   ", LIMITS, required=False) is None
    assert rules.text_problem("a\x00b", LIMITS, required=False) == "Must not contain NUL characters (U+0000)."
    assert rules.text_problem("ab\ud800c", LIMITS, required=True) == (
        "Must be valid Unicode: unpaired surrogate U+D800 at character 2."
    )
    assert rules.text_problem("\udfff", LIMITS, required=False).endswith("U+DFFF at character 0.")
    assert rules.text_problem("\U0001f98a\x07\x1b", LIMITS, required=True) is None  # any other Unicode is fine


def test_the_prompt_length_limit_is_inclusive():
    limits = Limits(max_prompt_chars=10)
    assert rules.text_problem("x" * 10, limits, required=True) is None
    assert rules.text_problem("x" * 11, limits, required=True) == "Must be at most 10 characters."
    assert rules.text_problem("x" * 4000, LIMITS, required=True) is None
    assert rules.text_problem("x" * 4001, LIMITS, required=True) == "Must be at most 4000 characters."


@pytest.mark.parametrize(
    "text", ["", " ", "a", " a ", "\x00", "a\x00", "\t\n", "\u3000x", "\u2028", "\x1c\x1d\x1e\x1f", "\ufeff", "\x85"]
)
def test_the_documented_patterns_refuse_exactly_what_the_rules_refuse(text):
    required = rules.text_problem(text, LIMITS, required=True) is None
    optional = rules.text_problem(text, LIMITS, required=False) is None
    assert bool(re.fullmatch(rules.REQUIRED_TEXT_PATTERN, text)) == required, repr(text)
    assert bool(re.fullmatch(rules.TEXT_PATTERN, text)) == optional, repr(text)


# -- whole requests ----------------------------------------------------------------------------------------


def test_a_good_request_has_no_problems():
    assert rules.request_problems(GenerationRequest("a fox"), LIMITS) == {}
    full = GenerationRequest(
        "a fox",
        seed=7,
        width=512,
        height=768,
        steps=20,
        guidance=4.5,
        negative_prompt="blurry",
        quality=90,
        priority=True,
    )
    assert rules.request_problems(full, LIMITS) == {}


def test_every_problem_is_named_by_its_field():
    bad = GenerationRequest(
        "", seed=-5, width=10, height=99999, steps=0, guidance=99.0, negative_prompt="no\x00", quality=0
    )
    problems = rules.request_problems(bad, LIMITS)
    assert set(problems) == {"prompt", "seed", "width", "height", "steps", "guidance", "negative_prompt", "quality"}
    assert problems["prompt"] == ["Must not be empty."]
    assert problems["negative_prompt"] == ["Must not contain NUL characters (U+0000)."]
    assert problems["width"] == ["Must be between 64 and 2560 pixels."]
    assert all(len(messages) == 1 for messages in problems.values())


def test_an_empty_negative_prompt_is_no_problem():
    assert rules.request_problems(GenerationRequest("a", negative_prompt=""), LIMITS) == {}
    assert rules.request_problems(GenerationRequest("a", negative_prompt="  "), LIMITS) == {}


def test_the_pixel_limit_counts_width_times_height_with_defaults():
    limits = Limits(max_pixels=1000 * 1000)
    assert rules.request_problems(GenerationRequest("a", width=1000, height=1000), limits) == {}
    over = rules.request_problems(GenerationRequest("a", width=1000, height=1001), limits)
    assert over == {"width": ["width × height is 1,001,000 pixels; this server makes at most 1,000,000."]}
    # A missing side is the default side (1024): 1024 × 1000 is over.
    assert "width" in rules.request_problems(GenerationRequest("a", height=1000), limits)
    assert "width" in rules.request_problems(GenerationRequest("a", width=1000), limits)
    assert "width" in rules.request_problems(GenerationRequest("a"), limits)  # 1024²
    assert rules.request_problems(GenerationRequest("a"), Limits(max_pixels=1024 * 1024)) == {}
    # A side already out of range is the one problem reported: the product is not judged on top of it.
    both = rules.request_problems(GenerationRequest("a", width=10, height=5000), limits)
    assert both == {"width": ["Must be between 64 and 2560 pixels."], "height": ["Must be between 64 and 2560 pixels."]}
    tall = rules.request_problems(GenerationRequest("a", width=2000, height=5000), limits)
    assert tall == {"height": ["Must be between 64 and 2560 pixels."]}
    wide = rules.request_problems(GenerationRequest("a", width=5000, height=2000), limits)
    assert wide == {"width": ["Must be between 64 and 2560 pixels."]}  # not replaced by the pixel count


def test_count_problems():
    assert [rules.count_problem(n, LIMITS) for n in (1, 2, 4)] == [None, None, None]
    assert rules.count_problem(0, LIMITS) == "Must ask for at least one image."
    assert rules.count_problem(-3, LIMITS) == "Must ask for at least one image."
    assert rules.count_problem(5, LIMITS) == "Asks for 5 images; this server makes at most 4 per request."
    assert rules.count_problem(2, Limits(max_images_per_request=1)) == (
        "Asks for 2 images; this server makes at most 1 per request."
    )
    # A server that makes none per request (--max-images-per-request 0) says so, even for one.
    assert rules.count_problem(1, Limits(max_images_per_request=0)) == (
        "Asks for 1 images; this server makes at most 0 per request."
    )


def test_random_seeds_are_in_range_and_vary():
    seeds = {rules.random_seed() for _ in range(200)}
    assert all(0 <= seed <= MAX_SEED for seed in seeds)
    assert len(seeds) > 190


def test_random_seeds_can_reach_the_largest_seed(monkeypatch):
    drawn = []
    monkeypatch.setattr(rules.secrets, "randbelow", lambda n: drawn.append(n) or n - 1)
    assert rules.random_seed() == MAX_SEED
    assert drawn == [MAX_SEED + 1]


# -- to parameters -----------------------------------------------------------------------------------------


def test_defaults_come_from_the_engine_and_the_limits(info):
    params = rules.to_params(GenerationRequest("a fox"), LIMITS, info)
    assert (params.prompt, params.width, params.height) == ("a fox", 1024, 1024)
    assert params.steps == info.default_steps == 4
    assert params.guidance == info.default_guidance == 3.5
    assert params.negative_prompt is None
    assert 0 <= params.seed <= MAX_SEED
    small = rules.to_params(GenerationRequest("a fox"), Limits(max_side=512), info)
    assert (small.width, small.height) == (512, 512)


def test_what_a_request_sets_is_kept_and_sides_are_rounded_down_for_the_model(info):
    request = GenerationRequest("a fox", seed=0, width=530, height=777, steps=9, guidance=0.0, negative_prompt="blurry")
    params = rules.to_params(request, LIMITS, info)
    assert (params.seed, params.width, params.height, params.steps) == (0, 528, 768, 9)
    assert params.guidance == 0.0  # zero is a guidance, not "unset"
    assert params.negative_prompt == "blurry"
    assert rules.to_params(GenerationRequest("a", negative_prompt=""), LIMITS, info).negative_prompt is None
    assert rules.to_params(GenerationRequest("a", seed=MAX_SEED), LIMITS, info).seed == MAX_SEED


def test_a_model_without_adjustable_guidance_gets_its_own(info):
    fixed = dataclasses.replace(info, guidance_adjustable=False, default_guidance=0.0)
    assert rules.to_params(GenerationRequest("a", guidance=7.0), LIMITS, fixed).guidance == 0.0
    assert rules.to_params(GenerationRequest("a"), LIMITS, fixed).guidance == 0.0
    assert rules.to_params(GenerationRequest("a", guidance=7.0), LIMITS, info).guidance == 7.0
