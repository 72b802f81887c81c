"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis 4), against a real
server process: no 5xx, every error a JSON body with a `message`, every response as documented.

The run covers every operation in the document the server serves, in all four phases: the document's
examples; coverage cases (boundaries, missing, wrong-typed and surplus parameters); `MAX_EXAMPLES` random cases
per operation, valid and invalid; and stateful sequences that follow the links between operations
(generate -> status -> image -> cancel) with real task ids. It drives the `st` CLI: schemathesis' pytest
integration for fixtures (`schemathesis.pytest.from_fixture`) reads `request.node._nodeid`, which pytest 9 no
longer has, and a server started at import time would be worse. The seed is random and printed on failure;
set MFLUX_FUZZ_SEED to replay a run.

Checks: every built-in one plus ours (`tests/support/fuzz_checks.py`: errors are JSON with a message), except
`negative_data_rejection`, which demands that anything the document does not describe be refused. The API is
lenient on purpose, as the original server was: numbers may come as digit strings, `priority` as 0/1/"true",
`format` as "jpg" or lowercase, and unknown body fields (the original web UI sends some) are ignored. Every
such request is still checked for 5xx, status code, content type, headers and response schema.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from api.a1111.views import UNSUPPORTED
from harness.server_process import ROOT, RunningServer

MAX_EXAMPLES = 30  # per operation and phase; the file runs in about a minute on two cores
ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    # Small limits keep the tasks the fuzzer queues cheap for the demo engine, which renders them on the same
    # cores; the document carries the configured limits, so the fuzzer keeps to them when it means to.
    args = ("--max-side", "256", "--max-steps", "4", "--no-previews")
    with RunningServer(tmp_path_factory.mktemp("fuzz") / "data", args, demo_speed=1000) as server:
        yield server


# One run per API family, so that a failure names the part of the server (and its owner) at fault.
FAMILIES = {
    "api": r"^/api/",  # the queue API itself
    "openai": r"^/v1/",  # OpenAI-compatible images API
    "a1111": r"^/sdapi/",  # AUTOMATIC1111-compatible API
}
OTHERS = r"^/(?!api/|v1/|sdapi/)"  # anything added later is fuzzed too, not silently left out
# A1111's endpoints this server does not implement answer 501 by design (tests/test_a1111.py checks them).
UNSUPPORTED_A1111 = "^/sdapi/v1/(" + "|".join(re.escape(name) for name in UNSUPPORTED) + ")$"
# The operations that take images run apart, without `positive_data_acceptance`: an image is base64 text to a
# schema, and whether that text is a picture (and the rules between images, masks and models) no schema can
# say. Generated images are made real pictures where schemathesis lets a hook see them (fuzz_checks.py);
# tests/test_image_input.py checks what is accepted.
IMAGES = r"^/(api/generate|v1/images/edits|sdapi/v1/img2img|sdapi/v1/extra-single-image)$"


@pytest.mark.parametrize("family", [*FAMILIES, "others", "images"])
def test_every_operation_answers_as_documented(fuzzed_server, tmp_path, family):
    pattern = IMAGES if family == "images" else FAMILIES.get(family, OTHERS)
    paths = fuzzed_server.get("/openapi.json").json()["paths"]
    if not any(re.match(pattern, path) for path in paths):
        pytest.skip(f"the document has no {family} operations")
    command = [
        str(ST), "run", fuzzed_server.url + "/openapi.json",
        "--include-path-regex", pattern,
        "--exclude-path-regex", UNSUPPORTED_A1111 if family == "images" else f"{UNSUPPORTED_A1111}|{IMAGES}",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--mode", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--checks", "all",
        "--exclude-checks", "negative_data_rejection" + (",positive_data_acceptance" if family == "images" else ""),
        "--request-timeout", "30",
        "--workers", "1",  # with 2, hypothesis' ast.parse in two threads trips a CPython 3.11 SystemError
        "--generation-database", "none",
        "--no-color",
    ]  # fmt: skip
    if seed := os.environ.get("MFLUX_FUZZ_SEED"):
        command += ["--seed", seed]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.fuzz_checks", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"schemathesis found problems:\n{run.stdout[-20000:]}\n{run.stderr[-3000:]}"
    # Every selected operation was exercised, and the server is still well after all that.
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested and selected.group(1) == tested.group(1), run.stdout[-3000:]
    health = fuzzed_server.get("/api/health").json()
    assert health["ok"] is True and health["worker_restarts"] == 0


def test_the_document_carries_the_configured_limits(fuzzed_server):
    properties = fuzzed_server.get("/openapi.json").json()["components"]["schemas"]["GenerateRequest"]["properties"]
    assert (properties["width"]["minimum"], properties["width"]["maximum"]) == (64, 256)
    assert properties["steps"]["maximum"] == 4
    assert (properties["prompt"]["minLength"], properties["prompt"]["maxLength"]) == (1, 4000)


def test_405_names_the_allowed_methods(fuzzed_server):
    response = fuzzed_server.post("/api/status", json={})
    assert response.status_code == 405
    assert {"GET", "HEAD", "OPTIONS"} <= set(response.headers["Allow"].replace(" ", "").split(","))
    assert response.json()["message"]


def test_documented_errors_have_the_error_schema(fuzzed_server):
    """Errors that the fuzzer only sees by chance (a full queue, an image already fetched) are documented too."""
    paths = fuzzed_server.get("/openapi.json").json()["paths"]
    error = {"$ref": "#/components/schemas/Error"}
    generate = paths["/api/generate"]["post"]["responses"]
    for status in ("413", "422", "429", "503"):
        assert generate[status]["content"]["application/json"]["schema"] == error, status
    assert "Retry-After" in generate["429"]["headers"]
    for path in ("/api/status", "/api/image", "/api/cancel"):
        assert paths[path]["get"]["responses"]["404"]["content"]["application/json"]["schema"] == error, path
