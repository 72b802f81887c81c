"""Bad input against the real server: any Unicode in prompts, oversized and absurd bodies, impossible seeds,
multiplying fields, and path-like task ids on every endpoint that takes one. Each is refused with a JSON
message naming what is wrong, or handled safely; the server keeps serving and loses nothing.

The policy for prompt text (api/schemas.py): any Unicode is accepted and stored verbatim, control characters
included, and it comes back unchanged in the image's metadata; refused with a 422 naming the field are NUL
(U+0000, the end of a string to C-level consumers) and unpaired surrogates (JSON can carry `"\\ud800"`, UTF-8
cannot). The body limit is 256 KiB (a legitimate body, two 4000-character prompts as escaped JSON, can reach
~100 kB): a 100 kB prompt is refused by the prompt's limit (422), a 1 MB body by the body limit (413).
"""

from __future__ import annotations

import io
import json
import re
import socket
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.server_process import RunningServer
from worker.encoding import read_metadata

SMALL = {"width": 64, "height": 64, "steps": 1}

UNICODE_PROMPTS = [
    "a fox 🦊 with 👩‍👩‍👧‍👦 and 🏳️‍🌈, skin tones 👍🏽",
    "שועל אדום ליד הים",  # Hebrew, right to left
    "ثعلب أحمر \u202eembedded override\u202c and \u200fRLM",
    "狐狸 キツネ 여우 ≠ ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0001f600\U00010348",
    "e\u0301 combining, zero\u200bwidth, BOM \ufeff inside",
    "controls: bell \x07, escape \x1b[31mred\x1b[0m, DEL \x7f, C1 \x85\x9b, separators \u2028\u2029",
    "tab\there, newline\nthere, CR\r, form feed \x0c and \x01\x02\x1f",
    'quotes " \' ` and backslash \\ and json {"a": [1]} and <script>alert(1)</script>',
    "%s %n %x {0} ${HOME} $(reboot) ; rm -rf / ' OR 1=1 --",
]


def submit(server: RunningServer, **body) -> requests.Response:
    return server.post("/api/generate", json={**SMALL, **body})


def assert_json_error(response: requests.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == status and body["message"].strip()
    if field is not None:
        assert body["message"].startswith(f"{field}:"), body["message"]
    return body


# -- prompts with any Unicode ------------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_unicode_prompts_round_trip_into_the_image_metadata(shared_server, image_format):
    ids = []
    for prompt in UNICODE_PROMPTS:
        response = submit(shared_server, prompt=prompt, negative_prompt=prompt[::-1], format=image_format)
        assert response.status_code == 200, response.text
        ids.append(response.json()["task_id"])
    listed = {t["task_id"]: t for t in shared_server.get("/api/tasks").json()}
    for task_id, prompt in zip(ids, UNICODE_PROMPTS, strict=True):
        assert listed[task_id]["prompt"] == prompt
        assert listed[task_id]["negative_prompt"] == prompt[::-1]
        shared_server.wait_status(task_id)
        data = shared_server.get("/api/image", params={"task_id": task_id}).content
        assert Image.open(io.BytesIO(data)).format == image_format
        assert read_metadata(data)["prompt"] == prompt


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        ("prompt", "before\x00after", "NUL"),
        ("prompt", "\x00", "NUL"),
        ("negative_prompt", "no\x00thanks", "NUL"),
        ("prompt", "lone \ud800 surrogate", "surrogate"),
        ("prompt", "reversed pair \udc00\ud800", "surrogate"),
        ("negative_prompt", "\udfff", "surrogate"),
        ("prompt", " \t\n\u3000\u2028\x1c", "empty"),
    ],
)
def test_nul_unpaired_surrogates_and_blank_prompts_are_refused_naming_the_field(shared_server, field, text, reason):
    body = {"prompt": "fine", **SMALL, field: text}
    # json.dumps escapes the surrogates as \ud800, as a JavaScript client would send them
    response = shared_server.post("/api/generate", data=json.dumps(body), headers={"Content-Type": "application/json"})
    message = assert_json_error(response, 422, field)["message"]
    assert reason in message or (reason == "empty" and "empty" in message), message


# Any character, with surrogates, NUL and the usual troublemakers drawn far more often than chance would.
ANY_CHARACTER = st.one_of(
    st.characters(), st.characters(categories=["Cs", "Cc", "Cf", "Zs", "Zl", "Zp"]), st.sampled_from("\x00\x1b\u202e")
)


@given(prompt=st.text(ANY_CHARACTER, min_size=1, max_size=300))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_is_stored_exactly_or_refused_with_a_message(shared_server, prompt):
    """Whatever the text (surrogates included), the answer is 200 with the prompt stored exactly, or a 422 that
    names the prompt: never a 5xx, never a prompt silently changed."""
    response = shared_server.post(
        "/api/generate", data=json.dumps({"prompt": prompt, **SMALL}), headers={"Content-Type": "application/json"}
    )
    if response.status_code == 422:
        assert response.json()["message"].startswith("prompt:")
        assert "\x00" in prompt or not prompt.strip() or any("\ud800" <= c <= "\udfff" for c in prompt)
        return
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    listed = {t["task_id"]: t for t in shared_server.get("/api/tasks").json()}
    assert task_id in listed, (response.json(), shared_server.status(task_id))
    assert listed[task_id]["prompt"] == prompt
    assert listed[task_id]["status"] != "failed", listed[task_id]["error"]
    shared_server.get("/api/cancel", params={"task_id": task_id})  # the images are the round-trip test's job


# -- the hostile requests, against a server with a busy engine and canaries ---------------------------------


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A server whose engine is busy for the whole module, with a finished image and a waiting task (canaries),
    and a secret file beside its data directory that path tricks would reach."""
    root = tmp_path_factory.mktemp("hostile")
    secret = root / "secret.txt"
    secret.write_text("do not touch")
    with RunningServer(root / "data", ("--no-previews",), demo_speed=1) as server:
        done = server.generate("canary image", seed=11, width=64, height=64, steps=1, format="PNG")
        server.wait_status(done, timeout=60)
        image = server.get("/api/image", params={"task_id": done, "delete": "false"}).content
        blocker = server.generate("blocker", width=2560, height=2560, steps=100)
        server.wait_status(blocker, "running", timeout=60)
        waiting = server.generate("canary waiting", seed=12, width=64, height=64, steps=1, format="PNG")
        yield {"server": server, "done": done, "image": image, "waiting": waiting, "blocker": blocker, "root": root}


def snapshot(root) -> dict[str, tuple[int, int]]:
    """Every file under the test's root (the data directory and the secret beside it): size and mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("tasks.sqlite3")  # SQLite's own files change as it likes
    }


def test_100_kb_and_1_mb_bodies_are_refused_as_json(busy):
    server = busy["server"]
    assert_json_error(submit(server, prompt="x" * 100_000), 422, "prompt")
    assert_json_error(submit(server, prompt="🦊" * 8_000), 422, "prompt")  # 96 kB as escaped JSON: under the cap
    assert_json_error(submit(server, prompt="x" * 1_000_000), 422, "prompt")  # /api/generate takes images: room
    big = server.post("/api/load", json={"model": "x" * 1_000_000})  # no images taken here: 256 kB at most
    assert_json_error(big, 413)
    garbage = server.post("/api/generate", data=b"\xff\xfe" + b"A" * 100_000, headers={"Content-Type": "text/plain"})
    assert_json_error(garbage, 400)
    assert "JSON" in garbage.json()["message"]


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_is_a_400_not_a_crash(busy, depth):
    server = busy["server"]
    nested = server.post("/api/generate", data="[" * depth, headers={"Content-Type": "application/json"})
    assert_json_error(nested, 400)
    inside = '{"prompt": "x", "extra": ' + "[" * depth + "]" * depth + "}"
    assert_json_error(server.post("/api/generate", data=inside, headers={"Content-Type": "application/json"}), 400)


def test_a_body_that_lies_about_its_length_is_refused_without_hanging(busy):
    """A Content-Length beyond waitress' own cap (four times the largest body with images) is refused before the
    body is read (no waiting for 2 GB to arrive). This answer comes from waitress, before the app, and is JSON
    all the same (api/waitress_errors.py; tests/test_transport_errors.py tries every such refusal)."""
    url = urlsplit(busy["server"].url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2000000000\r\n\r\n{\"prompt\": ")  # fmt: skip
        received = b""
        while chunk := conn.recv(65536):  # the server closes the connection after its answer
            received += chunk
    head, _, body = received.decode("latin-1").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert re.search(r"(?im)^content-type: application/json", head), head[:300]
    assert json.loads(body)["code"] == 413 and "larger than" in json.loads(body)["message"]


@pytest.mark.parametrize(
    ("seed", "accepted"),
    [
        (-1, None), (None, None), ("", None), ("-1", None), (0, 0), ("42", 42), (" 7 ", 7), (4294967295, 4294967295),
        (3.0, 3), ("٣", 3),  # Arabic-Indic three: a decimal digit int() reads
        (-2, False), (-(10**20), False), (4294967296, False), (2**64, False), (10**400, False), (1.5, False),
        ("1.5", False), ("1e3", False), ("0x10", False), ("²", False), ("-0", False), (True, False), ([1], False),
        ({"seed": 1}, False), ("NaN", False), (float("inf"), False),
    ],
    ids=lambda value: "refused" if value is False else repr(value)[:24],
)  # fmt: skip
def test_seeds_are_integers_in_range_or_refused_naming_the_field(busy, seed, accepted):
    server = busy["server"]
    body = json.dumps({"prompt": "seed test", **SMALL, "seed": seed})  # inf goes as `Infinity`: Python's JSON
    response = server.post("/api/generate", data=body, headers={"Content-Type": "application/json"})
    if accepted is False:
        assert_json_error(response, 422, "seed")
        return
    assert response.status_code == 200, response.text
    answer = response.json()
    assert 0 <= answer["seed"] <= 2**32 - 1
    if accepted is not None:
        assert answer["seed"] == accepted
    server.get("/api/cancel", params={"task_id": answer["task_id"]})


def test_huge_counts_create_no_more_than_one_task_or_are_refused(busy):
    """Multiplying fields (`n`, batch sizes) on every endpoint that takes a prompt: absurd values are refused
    (or, on /api/generate, which has no such field, ignored), and never queue a flood of tasks."""
    server = busy["server"]
    before = server.get("/api/health").json()["waiting"]
    huge = {"n": 10**9, "batch_size": 10**6, "n_iter": 10**6, "num_images": 10**9, "count": 10**12}
    response = submit(server, prompt="only one", **huge)
    assert response.status_code == 200
    assert server.get("/api/health").json()["waiting"] == before + 1
    server.get("/api/cancel", params={"task_id": response.json()["task_id"]})

    document = server.get("/openapi.json").json()
    absurd = (10**9, -1, 2**63, "many")
    checked = 0
    probed = set()
    for path, operations in document["paths"].items():
        properties = body_properties(document, operations.get("post", {}))
        if path == "/api/generate" or "prompt" not in properties:
            continue
        for key in set(huge) & set(properties):
            probed.add((path, key))
            for value in absurd:
                refused = server.post(path, json={"prompt": "flood", key: value}, timeout=30)
                assert 400 <= refused.status_code < 500, (path, key, value, refused.status_code, refused.text[:300])
                assert refused.headers["Content-Type"].startswith("application/json"), (path, refused.text[:300])
                checked += 1
    # The multiplying fields of the imitated APIs were found in the documents and each probed with every value:
    # a document that stopped describing them would otherwise make this test pass having checked nothing.
    multiplying = {
        ("/v1/images/generations", "n"),
        ("/sdapi/v1/txt2img", "batch_size"),
        ("/sdapi/v1/txt2img", "n_iter"),
    }
    assert multiplying <= probed, probed
    assert checked == len(probed) * len(absurd) >= 12
    assert server.get("/api/health").json()["waiting"] == before


def body_properties(document: dict, operation: dict) -> dict:
    """The top-level properties of an operation's JSON body, `$ref`s resolved."""
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema.get("properties", {})


# -- path-like task ids ------------------------------------------------------------------------------------

BAD_IDS = [
    "../../etc/passwd",
    "../../secret.txt",  # from data/images/ this is the secret beside the data directory
    "../tasks.sqlite3",
    "..\\..\\secret.txt",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "0123456789abcdef/../../secret.txt",
    "0123456789abcdef\x00.png",
    "0123456789abcdef\n",
    " 0123456789abcdef",
    "0123456789ABCDEF",
    "０１２３４５６７８９ａｂｃｄｅｆ",  # fullwidth digits and letters
    "٠١٢٣٤٥٦٧٨٩abcdef",  # Arabic-Indic digits
    "' OR '1'='1",
    "*",
    "%",
    ".",
    "..",
]
RAW_IDS = ["%2e%2e%2f%2e%2e%2fsecret.txt", "%252e%252e%252fsecret.txt", "..%2F..%2Fsecret.txt", "%00", "%ff%fe"]


def task_id_operations(server: RunningServer) -> list[tuple[str, str, str]]:
    """(method, path template, where) of every documented operation taking a task_id, whoever added it."""
    return [
        (method.upper(), path, parameter["in"])
        for path, operations in server.get("/openapi.json").json()["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if parameter.get("name") == "task_id" and parameter.get("in") in ("query", "path")
    ]


def test_every_task_id_endpoint_is_found(busy):
    operations = task_id_operations(busy["server"])
    assert {("GET", "/api/status"), ("GET", "/api/image"), ("GET", "/api/cancel"), ("DELETE", "/api/cancel")} <= {
        (method, path) for method, path, _ in operations
    }


def test_path_like_task_ids_are_404_everywhere_and_touch_nothing(busy):
    server, root = busy["server"], busy["root"]
    before = snapshot(root)
    operations = task_id_operations(server)
    for method, path, where in operations:
        for bad in BAD_IDS:
            if where == "path":
                url = server.url + path.replace("{task_id}", requests.utils.quote(bad, safe=""))
                response = requests.request(method, url, timeout=30)
            else:
                params = {"task_id": bad, "delete": "true"} if path == "/api/image" else {"task_id": bad}
                response = requests.request(method, server.url + path, params=params, timeout=30, stream=True)
            assert response.status_code in (404, 422), (method, path, bad, response.status_code)
            assert response.headers["Content-Type"].startswith("application/json"), (method, path, bad)
            assert "do not touch" not in response.text and "root:" not in response.text
            response.close()
        for raw in RAW_IDS:
            response = requests.request(method, f"{server.url}{path.split('{')[0]}?task_id={raw}", timeout=30)
            assert response.status_code in (404, 422), (method, path, raw, response.status_code)
    assert snapshot(root) == before, "a request with a bad task id changed a file"
    assert (root / "secret.txt").read_text() == "do not touch"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../../server.py", "/ui/..%2f..%2fserver.py", "/ui/%2e%2e/%2e%2e/server.py", "/ui//etc/passwd",
        "/swagger-assets/../../server.py", "/swagger-assets/..%2f..%2f..%2fetc%2fpasswd", "/api/image/../../secret.txt",
        "/api/../server.py", "/%2e%2e/%2e%2e/etc/passwd",
    ],
)  # fmt: skip
def test_path_tricks_on_static_routes_serve_nothing_outside(busy, path):
    url = urlsplit(busy["server"].url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:  # sent as is, not normalised
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
    status = int(head.split()[1])
    assert status in (400, 404, 308), head[:200]  # 308: "//" merged into "/", a path inside the server
    if status == 308:
        location = re.search(r"(?im)^location: (\S+)", head).group(1)
        assert urlsplit(location).path.startswith(("/ui/", "/swagger-assets/", "/api/")), location
    assert "import" not in body and "root:" not in body


def test_after_all_that_the_canaries_are_intact_and_the_server_serves(busy):
    server = busy["server"]
    image = server.get("/api/image", params={"task_id": busy["done"], "delete": "false"})
    assert image.status_code == 200 and image.content == busy["image"]
    waiting = server.status(busy["waiting"])
    assert waiting["status"] == "waiting" and waiting["pos"] == 0
    health = server.get("/api/health").json()
    assert health["ok"] and health["worker_restarts"] == 0
    server.get("/api/cancel", params={"task_id": busy["blocker"]})
    server.wait_status(busy["waiting"], timeout=60)
    data = server.get("/api/image", params={"task_id": busy["waiting"]}).content
    assert read_metadata(data)["prompt"] == "canary waiting" and read_metadata(data)["seed"] == "12"
    assert not re.search(r"Traceback|Internal Server Error", server.log_text())


# -- integers longer than Python reads ---------------------------------------------------------------------

TOO_LONG = "9" * 5000  # beyond Python's 4,300-digit int-to-str limit: json.loads raised ValueError, a 500


def test_integers_of_thousands_of_digits_are_refused_by_name_in_every_field_of_every_api(busy):
    """Issue 14, item 3: such a number anywhere in a JSON body (even a field nobody reads) was a 500. In each
    body field of every JSON operation the OpenAPI documents list, beside a prompt that is no string (so that
    no call blocks on the busy engine): a 4xx in the API's shape that names the field, never a 5xx."""
    server = busy["server"]
    document = server.get("/openapi.json").json()
    probed = 0
    for path, operations in document["paths"].items():
        properties = body_properties(document, operations.get("post", {}))
        if "prompt" not in properties:
            continue
        for name in [*properties, "a_field_nobody_reads"]:
            if name == "prompt":
                continue
            body = '{"prompt": 12345, "' + name + '": ' + TOO_LONG + "}"
            response = server.post(path, data=body, headers={"Content-Type": "application/json"})
            assert 400 <= response.status_code < 500, (path, name, response.status_code, response.text[:300])
            text = response.text
            assert "prompt" in text, (path, name, text[:300])
            declared = properties.get(name, {})
            if declared.get("type") in ("integer", "number", "string"):
                assert name in text, (path, name, text[:300])
            probed += 1
    assert probed >= 60  # /api/generate, /v1 generations and edits, /sdapi txt2img and img2img


@pytest.mark.parametrize(
    ("path", "field"), [("/api/generate", "seed"), ("/v1/images/generations", "quality"), ("/api/generate", "steps")]
)
def test_digit_strings_of_thousands_of_digits_are_refused_by_name(busy, path, field):
    server = busy["server"]
    response = server.post(path, json={"prompt": 12345, field: TOO_LONG})
    assert 400 <= response.status_code < 500 and field in response.text, response.text[:300]
