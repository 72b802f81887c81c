"""Every limit, on both sides of its edge (the largest value accepted, and one step beyond), through every API
that takes it: our /api, OpenAI's /v1 and AUTOMATIC1111's /sdapi/v1, against one real server with small limits.

A limit whose check was removed, or moved by one, fails here: "accepted" means 200 (and the task made as asked),
"refused" means that API's 4xx naming the field, in its own words.
"""

from __future__ import annotations

import pytest

MAX_SIDE, MAX_STEPS, MAX_CHARS, MAX_IMAGES = 512, 6, 50, 2
MAX_PIXELS = 512 * 384
LIMITS = (
    "--max-side", str(MAX_SIDE), "--max-steps", str(MAX_STEPS), "--max-prompt-chars", str(MAX_CHARS),
    "--max-images-per-request", str(MAX_IMAGES), "--max-pixels", str(MAX_PIXELS),
)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from harness.server_process import RunningServer

    running = RunningServer(tmp_path_factory.mktemp("limits") / "data", LIMITS, demo_speed=200).start()
    yield running
    assert running.stop() == 0


def own(server, **body):
    return server.post("/api/generate", json={"prompt": "edge", "width": 256, "height": 256, "steps": 1, **body})


def openai(server, **body):
    return server.post("/v1/images/generations", json={"prompt": "edge", "size": "256x256", **body})


def a1111(server, **body):
    return server.post("/sdapi/v1/txt2img", json={"prompt": "edge", "width": 256, "height": 256, "steps": 1, **body})


def refused_by_own(response, field: str) -> bool:
    body = response.json()
    return response.status_code == 422 and field in body["errors"]["json"] and body["message"].startswith(field)


def refused_by_openai(response, param: str) -> bool:
    error = response.json()["error"]
    return response.status_code == 400 and error["param"] == param and error["type"] == "invalid_request_error"


def refused_by_a1111(response, field: str) -> bool:
    return response.status_code == 422 and response.json()["detail"].startswith(f"{field}:")


# -- /api/generate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "largest", "beyond"),
    [
        ("width", MAX_SIDE, MAX_SIDE + 1),
        ("height", MAX_SIDE, MAX_SIDE + 1),
        ("steps", MAX_STEPS, MAX_STEPS + 1),
        ("quality", 100, 101),
        ("guidance", 30.0, 30.001),
        ("seed", 2**32 - 1, 2**32),
    ],
)
def test_own_api_numeric_limits(server, field, largest, beyond):
    other = {"height": 256} if field == "width" else {"width": 256}
    accepted = own(server, **other, **{field: largest})
    assert accepted.status_code == 200, accepted.text
    if field in ("width", "height", "steps", "seed"):
        assert accepted.json()[field] == largest
    assert refused_by_own(own(server, **other, **{field: beyond}), field)


@pytest.mark.parametrize(
    ("field", "smallest", "below"),
    [("width", 64, 63), ("height", 64, 63), ("steps", 1, 0), ("quality", 1, 0), ("guidance", 0.0, -0.001)],
)
def test_own_api_lower_limits(server, field, smallest, below):
    assert own(server, **{field: smallest}).status_code == 200
    assert refused_by_own(own(server, **{field: below}), field)


def test_own_api_prompt_length(server):
    assert own(server, prompt="x" * MAX_CHARS).status_code == 200
    assert refused_by_own(own(server, prompt="x" * (MAX_CHARS + 1)), "prompt")
    assert own(server, negative_prompt="x" * MAX_CHARS).status_code == 200
    assert refused_by_own(own(server, negative_prompt="x" * (MAX_CHARS + 1)), "negative_prompt")


def test_own_api_pixels(server):
    assert own(server, width=512, height=384).status_code == 200  # exactly MAX_PIXELS
    assert refused_by_own(own(server, width=512, height=400), "width")  # 16 rows more
    assert refused_by_own(own(server, width=512, height=512), "width")


# -- /v1/images/generations ------------------------------------------------------------------------------


def test_openai_sides_and_pixels(server):
    assert openai(server, size="512x384").status_code == 200
    assert refused_by_openai(openai(server, size="513x64"), "size")
    assert refused_by_openai(openai(server, size="64x513"), "size")
    assert refused_by_openai(openai(server, size="512x400"), "size")  # within the sides, beyond the pixels
    assert refused_by_openai(openai(server, size="63x64"), "size")


def test_openai_image_count(server):
    ok = openai(server, n=MAX_IMAGES, response_format="b64_json")
    assert ok.status_code == 200 and len(ok.json()["data"]) == MAX_IMAGES
    assert refused_by_openai(openai(server, n=MAX_IMAGES + 1), "n")
    assert refused_by_openai(openai(server, n=0), "n")


def test_openai_prompt_length(server):
    assert openai(server, prompt="x" * MAX_CHARS).status_code == 200
    assert refused_by_openai(openai(server, prompt="x" * (MAX_CHARS + 1)), "prompt")


def test_openai_quality(server):
    assert openai(server, quality=100, output_format="jpeg").status_code == 200
    assert refused_by_openai(openai(server, quality=101, output_format="jpeg"), "quality")


# -- /sdapi/v1/txt2img -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "largest", "beyond"),
    [("width", MAX_SIDE, MAX_SIDE + 1), ("steps", MAX_STEPS, MAX_STEPS + 1), ("cfg_scale", 30.0, 30.001)],
)
def test_a1111_numeric_limits(server, field, largest, beyond):
    accepted = a1111(server, **{field: largest})
    assert accepted.status_code == 200, accepted.text
    assert refused_by_a1111(a1111(server, **{field: beyond}), field)


def test_a1111_batch_count(server):
    ok = a1111(server, batch_size=1, n_iter=MAX_IMAGES)
    assert ok.status_code == 200 and len(ok.json()["images"]) == MAX_IMAGES
    assert refused_by_a1111(a1111(server, batch_size=MAX_IMAGES, n_iter=2), "batch_size")
    assert refused_by_a1111(a1111(server, batch_size=MAX_IMAGES + 1), "batch_size")


def test_a1111_prompt_length_and_seed(server):
    assert a1111(server, prompt="x" * MAX_CHARS).status_code == 200
    assert refused_by_a1111(a1111(server, prompt="x" * (MAX_CHARS + 1)), "prompt")
    assert a1111(server, seed=2**32 - 1).status_code == 200
    assert refused_by_a1111(a1111(server, seed=2**32), "seed")
    assert refused_by_a1111(a1111(server, seed=-2), "seed")


def test_the_limits_are_in_the_documents(server):
    document = server.get("/openapi.json").json()["components"]["schemas"]
    own_props = document["GenerateRequest"]["properties"]
    assert own_props["width"]["maximum"] == MAX_SIDE and own_props["steps"]["maximum"] == MAX_STEPS
    assert own_props["prompt"]["maxLength"] == MAX_CHARS
    assert document["ImageGeneration"]["properties"]["n"]["maximum"] == MAX_IMAGES
    assert document["Txt2Img"]["properties"]["cfg_scale"]["maximum"] == 30.0
    info = server.get("/api/info").json()
    assert (info["max_side"], info["max_steps"], info["max_prompt_chars"]) == (MAX_SIDE, MAX_STEPS, MAX_CHARS)
    assert info["max_pixels"] == MAX_PIXELS
