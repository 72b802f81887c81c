"""The optional API key and CORS origins, against the real server."""

from __future__ import annotations

import base64

import openai
import pytest
import requests

from api.auth import exposure_warning, is_loopback, parse_origins
from harness.server_process import RunningServer, wait_for
from tests.support.sse import read_events

KEY = "s3cret-key-for-tests-7f1c"
BEARER = {"Authorization": f"Bearer {KEY}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server started with the key in its environment, as the docs recommend (argv is visible in `ps`)."""
    server = RunningServer(tmp_path_factory.mktemp("auth") / "data", demo_speed=100, env={"MFLUX_SERVER_API_KEY": KEY})
    server.start(wait_ready=False)  # the readiness probe has no key
    wait_for(lambda: server.get("/api/health", headers=BEARER).json().get("model_loaded"), 60, what="the engine")
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/health"), ("GET", "/api/info"), ("GET", "/api/tasks"), ("POST", "/api/generate"),
     ("GET", "/api/status?task_id=0123456789abcdef"), ("GET", "/api/clear")],
)  # fmt: skip
def test_api_requests_without_the_key_are_refused(keyed, method, path):
    response = requests.request(method, keyed.url + path, json={"prompt": "x"}, timeout=10)
    assert response.status_code == 401
    assert response.json() == {
        "code": 401,
        "status": "Unauthorized",
        "message": "This server requires an API key: send 'Authorization: Bearer <key>'.",
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = requests.request(method, keyed.url + path, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["message"] == "The API key is not valid for this server."


def test_the_key_lets_requests_through_and_nothing_leaks_it(keyed):
    submitted = keyed.post("/api/generate", json={"prompt": "a key", "width": 256, "height": 256}, headers=BEARER)
    task_id = submitted.json()["task_id"]
    wait_for(lambda: keyed.get("/api/status", params={"task_id": task_id}, headers=BEARER).json()["status"] == "done")
    assert keyed.get("/api/info", headers=BEARER).json()["auth_required"] is True
    # EventSource and <img> cannot send headers: ?api_key= works on exactly these three GETs.
    query = {"task_id": task_id, "api_key": KEY}
    with requests.get(keyed.url + "/api/events", params=query, stream=True, timeout=10) as stream:
        assert [m.event for m in read_events(stream) if m.event] == ["done"]
    assert keyed.get("/api/preview", params=query).status_code == 404  # authorised; it just has no preview now
    assert keyed.get("/api/image", params=query | {"delete": "false"}).status_code == 200
    assert keyed.get("/api/status", params=query).status_code == 401  # not elsewhere
    assert keyed.post("/api/generate", params={"api_key": KEY}, json={"prompt": "x"}).status_code == 401
    assert keyed.get("/api/image", params={"task_id": task_id, "api_key": "nope"}).status_code == 401
    log = "\n".join(keyed.lines)
    assert KEY not in log
    assert "an API key is required" in log


def test_pages_and_the_api_document_stay_open(keyed):
    for path in ("/", "/swagger", "/openapi.json", "/ui/app.js"):
        assert keyed.get(path).status_code == 200, path
    document = keyed.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The server's --api-key, or a named key of its --api-keys-file, if it has any. A user key "
        "sees and manages its own tasks only (others' appear in the queue anonymised); an admin key all.",
    }
    assert {"bearerAuth": []} in document["security"]


def test_cors_preflight_passes_without_the_key(keyed):
    response = requests.options(
        keyed.url + "/api/generate",
        headers={
            "Origin": "http://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://elsewhere.example")
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    # A refused request still carries the CORS headers, so a page can read the 401 and ask for the key.
    refused = requests.get(keyed.url + "/api/info", headers={"Origin": "http://elsewhere.example"}, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] in ("*", "http://elsewhere.example")


def test_openai_clients_send_the_key_as_a_bearer_token(keyed):
    listed = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY).models.list()
    assert [m.id for m in listed] == ["demo", "demo-fast", "demo-slow", "demo-edit", "demo-upscale"]
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert caught.value.body == {
        "message": "The API key is not valid for this server.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }


def test_a1111_clients_send_the_key_as_the_basic_auth_password(keyed):
    # Open WebUI ("API Auth" user:password) and SillyTavern ("auto_auth") only know A1111's HTTP basic auth.
    assert keyed.get("/sdapi/v1/options", headers=basic("mflux", KEY)).status_code == 200
    assert keyed.get("/sdapi/v1/options", headers=BEARER).status_code == 200
    for headers in ({}, basic("mflux", "nope"), {"Authorization": "Basic "}, {"Authorization": "Basic ???"}):
        response = keyed.get("/sdapi/v1/options", headers=headers)
        assert response.status_code == 401
        assert set(response.json()) == {"error", "detail", "body", "errors"}


# -- wrong keys of every shape, in every place a key is read ------------------------------------------------


def one_char_changed(key: str) -> list[str]:
    return [key[:i] + ("x" if key[i] != "x" else "y") + key[i + 1 :] for i in range(len(key))]


WRONG_KEYS = sorted(
    {KEY[:n] for n in range(len(KEY))}  # every prefix, the empty one included
    | {KEY + "x", KEY + "-", KEY + KEY, "x" + KEY, KEY + " x", KEY[1:], KEY[:-1] + "\t"}  # extensions, truncations
    | {KEY.upper(), KEY.swapcase(), KEY[0].upper() + KEY[1:], KEY.title()}  # case changes
    | {" ", "  ", "\t", KEY[:6] + " " + KEY[6:]}  # white space, and white space inside the key
    | {"x" * len(KEY), KEY[::-1], "s3cret-key-for-tests-0000", KEY[-1] + KEY[:-1]}  # other keys of equal length
    | set(one_char_changed(KEY)) - {KEY}
)
assert all(len(k) == len(KEY) for k in ("x" * len(KEY), KEY[::-1], "s3cret-key-for-tests-0000"))


def basic_alone(key: str) -> dict[str, str]:
    """HTTP basic auth with the key alone as its credentials, no "user:" in front."""
    return {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}


# Where a key may be presented: a way to send it, and a request that carries it.
HEADER_PLACES = {
    "bearer": lambda key: {"Authorization": f"Bearer {key}"},
    "basic user:key": lambda key: basic("mflux", key),
    "basic key alone": basic_alone,
}
QUERY_PATHS = ("/api/events", "/api/image", "/api/preview")  # ?api_key= is read on these GETs only


@pytest.fixture(scope="module")
def done_task(keyed) -> str:
    body = {"prompt": "keys", "width": 64, "height": 64, "steps": 1, "format": "PNG"}
    task_id = keyed.post("/api/generate", json=body, headers=BEARER).json()["task_id"]
    wait_for(lambda: keyed.get("/api/status", params={"task_id": task_id}, headers=BEARER).json()["status"] == "done")
    return task_id


def query_request(session: requests.Session, server: RunningServer, path: str, task_id: str, key: str):
    params = {"task_id": task_id, "api_key": key} | ({"delete": "false"} if path == "/api/image" else {})
    with session.get(server.url + path, params=params, stream=True, timeout=10) as response:
        return response.status_code


def test_the_wrong_key_set_covers_every_shape():
    assert len(WRONG_KEYS) > 60 and KEY not in WRONG_KEYS
    assert "" in WRONG_KEYS and KEY[:-1] in WRONG_KEYS and KEY + "x" in WRONG_KEYS and KEY.upper() in WRONG_KEYS


@pytest.mark.parametrize("place", HEADER_PLACES)
@pytest.mark.parametrize(
    "path", ["/api/info", "/api/status?task_id=0123456789abcdef", "/v1/models", "/sdapi/v1/options"]
)
def test_no_wrong_key_gets_in_through_a_header(keyed, place, path):
    """A check that accepts a prefix of the key, ignores case or compares only the length must fail here."""
    send = HEADER_PLACES[place]
    with requests.Session() as session:
        assert session.get(keyed.url + path, headers=send(KEY), timeout=10).status_code in (200, 404)  # the key: in
        codes = {k: session.get(keyed.url + path, headers=send(k), timeout=10).status_code for k in WRONG_KEYS}
    let_in = {k: code for k, code in codes.items() if code != 401}
    assert not let_in, f"wrong keys let in through {place} on {path}: {let_in}"


@pytest.mark.parametrize("path", QUERY_PATHS)
def test_no_wrong_key_gets_in_through_the_query(keyed, done_task, path):
    with requests.Session() as session:
        assert query_request(session, keyed, path, done_task, KEY) == (404 if path == "/api/preview" else 200)
        codes = {k: query_request(session, keyed, path, done_task, k) for k in WRONG_KEYS}
    let_in = {k: code for k, code in codes.items() if code != 401}
    assert not let_in, f"wrong keys let in through ?api_key= on {path}: {let_in}"


def test_the_right_key_works_in_every_place(keyed, done_task):
    for place, send in HEADER_PLACES.items():
        response = keyed.get("/api/status", params={"task_id": done_task}, headers=send(KEY))
        assert response.status_code == 200 and response.json()["status"] == "done", place
        assert keyed.get("/v1/models", headers=send(KEY)).status_code == 200, place
        assert keyed.get("/sdapi/v1/options", headers=send(KEY)).status_code == 200, place
    assert keyed.get("/api/status", params={"task_id": done_task}, headers=basic("", KEY)).status_code == 200
    with requests.get(keyed.url + "/api/events", params={"task_id": done_task, "api_key": KEY}, stream=True,
                      timeout=10) as stream:  # fmt: skip
        assert [m.event for m in read_events(stream) if m.event] == ["done"]
    image = keyed.get("/api/image", params={"task_id": done_task, "api_key": KEY, "delete": "false"})
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    preview = keyed.get("/api/preview", params={"task_id": done_task, "api_key": KEY})
    assert preview.status_code == 404 and "has no preview" in preview.json()["message"]  # authorised, past the check


def test_cors_origins_can_be_narrowed(server_factory):
    server = server_factory("--cors-origins", "http://a.example, http://b.example", demo_speed=100)
    allowed = server.get("/api/info", headers={"Origin": "http://b.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://b.example"
    other = server.get("/api/info", headers={"Origin": "http://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers


def test_no_key_on_a_public_address_is_warned_about(server_factory):
    server = server_factory("--host", "0.0.0.0")
    server.wait_for_log("listening on 0.0.0.0 without an API key")
    # (Started ready: a server stopped while its worker is still starting takes the supervisor's full timeout.)


def test_helpers():
    assert parse_origins("*") == "*"
    assert parse_origins(" http://a.example,http://b.example  http://c.example ") == [
        "http://a.example",
        "http://b.example",
        "http://c.example",
    ]
    assert parse_origins("http://a.example, *") == "*"
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "192.168.1.5", "::", "myhost.lan"))
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("0.0.0.0", "a key") is None
    assert "without an API key" in exposure_warning("0.0.0.0", None)
