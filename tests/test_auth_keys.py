"""api/auth.py in process (Flask's test client over a service with no worker): where a key is required, every
form it may come in, what a refusal says, and the helpers. The same against the real server:
tests/test_auth.py."""

from __future__ import annotations

import base64
import hashlib

import pytest

from api import create_app
from api.auth import exposure_warning, is_loopback, parse_origins
from core.submissions import GenerationRequest

KEY = "in-process-key-0451"
CHALLENGE = 'Bearer realm="mflux-server"'
NO_KEY = "This server requires an API key: send 'Authorization: Bearer <key>'."
WRONG_KEY = "The API key is not valid for this server."


@pytest.fixture
def keyed(service):
    return create_app({"TESTING": True, "MFLUX_API_KEY": KEY}, service=service).test_client()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(credentials: str | bytes) -> dict[str, str]:
    raw = credentials.encode() if isinstance(credentials, str) else credentials
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def cancelled_task(service) -> str:
    """A task whose event stream ends at once (no worker runs here): its final event, then the end."""
    task_id = service.submit(GenerationRequest("cancelled", width=64, height=64, steps=1)).task.id
    service.cancel(task_id)
    return task_id


# -- where the key is required -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api", "/api/info", "/api/tasks", "/api/nothing-here", "/v1", "/v1/models", "/sdapi", "/sdapi/v1/options"]
)
def test_every_path_under_the_api_prefixes_needs_the_key(keyed, path):
    refused = keyed.get(path)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == CHALLENGE
    assert keyed.get(path, headers=bearer(KEY)).status_code != 401


@pytest.mark.parametrize("path", ["/", "/swagger", "/openapi.json", "/ui/app.js", "/apis", "/v1x", "/sdapix", "/x/api"])
def test_pages_and_lookalike_paths_stay_open(keyed, path):
    assert keyed.get(path).status_code != 401


def test_without_a_key_configured_nothing_is_asked(client):
    assert client.get("/api/info").status_code == 200
    assert client.get("/api/info", headers=bearer("anything")).status_code == 200
    assert client.get("/api/info").get_json()["auth_required"] is False


def test_cors_preflights_pass_without_the_key(keyed):
    preflight = keyed.options(
        "/api/generate", headers={"Origin": "http://a.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200


# -- what a refusal says -----------------------------------------------------------------------------------


def test_no_key_and_a_wrong_key_are_told_apart_in_each_apis_shape(keyed):
    ours = keyed.get("/api/info")
    assert ours.get_json() == {"code": 401, "status": "Unauthorized", "message": NO_KEY}
    assert keyed.get("/api/info", headers=bearer("nope")).get_json()["message"] == WRONG_KEY
    assert keyed.get("/api/info", headers=bearer("")).get_json()["message"] == NO_KEY  # an empty token is none
    assert keyed.get("/api/info", headers={"Authorization": "Bearer"}).get_json()["message"] == NO_KEY
    assert keyed.get("/api/info", headers={"Authorization": "Token " + KEY}).get_json()["message"] == NO_KEY
    openai = keyed.get("/v1/models", headers=bearer("nope")).get_json()["error"]
    assert openai["message"] == WRONG_KEY and openai["code"] == "invalid_api_key"
    a1111 = keyed.get("/sdapi/v1/options").get_json()
    assert a1111["detail"] == NO_KEY and a1111["error"] == "Unauthorized"


# -- the forms a key may come in ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_in_any_case_with_spaces_around(keyed, scheme):
    assert keyed.get("/api/info", headers={"Authorization": f"{scheme} {KEY}"}).status_code == 200
    assert keyed.get("/api/info", headers={"Authorization": f"  {scheme}   {KEY}  "}).status_code == 200


@pytest.mark.parametrize("credentials", [f"user:{KEY}", f":{KEY}", KEY, f"{KEY}:"])  # last: `curl -u KEY:`
def test_basic_auth_with_the_key_as_password_or_alone(keyed, credentials):
    encoded = base64.b64encode(credentials.encode()).decode()
    for scheme in ("Basic", "basic", "BASIC"):
        assert keyed.get("/sdapi/v1/options", headers={"Authorization": f"{scheme} {encoded}"}).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        basic(f"{KEY}:wrong"),  # the key as the user name, another password
        basic(f"user:{KEY}x"),
        basic("user:"),
        basic(":"),
        basic(b"\xff\xfe:" + KEY.encode()),  # not UTF-8
        {"Authorization": "Basic not-base64!"},
        {
            "Authorization": "Basic "
            + (lambda v: v[:4] + "!" + v[4:])(base64.b64encode(f"user:{KEY}".encode()).decode())
        },
        {"Authorization": "Basic " + base64.b64encode(KEY.encode()).decode()[:-2]},  # cut short
        {"Authorization": "Basic"},
    ],
)
def test_basic_auth_with_anything_else_is_refused(keyed, header):
    assert keyed.get("/sdapi/v1/options", headers=header).status_code == 401


@pytest.mark.parametrize("scheme", ["Digest", "Token", "Negotiate", "Key"])
def test_other_schemes_are_not_read_as_basic_or_bearer(keyed, scheme):
    for value in (KEY, base64.b64encode(f"user:{KEY}".encode()).decode(), base64.b64encode(KEY.encode()).decode()):
        response = keyed.get("/sdapi/v1/options", headers={"Authorization": f"{scheme} {value}"})
        assert response.status_code == 401 and response.get_json()["detail"] == NO_KEY, (scheme, value)


def test_undecodable_basic_credentials_count_as_none_presented(keyed):
    for value in ("not-base64!", base64.b64encode(b"\xff\xfe").decode()):
        response = keyed.get("/api/info", headers={"Authorization": f"Basic {value}"})
        assert response.get_json()["message"] == NO_KEY, value


def test_the_query_key_works_on_the_three_gets_that_cannot_send_headers_only(keyed, cancelled_task):
    query = f"?task_id={cancelled_task}&api_key={KEY}"
    events = keyed.get("/api/events" + query)
    assert events.status_code == 200 and b"event: cancelled" in events.data
    assert keyed.get("/api/image" + query).status_code == 404  # past the check: it has no image
    assert keyed.get("/api/image" + query).get_json()["task_status"] == "cancelled"
    assert "has no preview" in keyed.get("/api/preview" + query).get_json()["message"]
    for path in ("/api/status", "/api/tasks", "/api/info", "/v1/models", "/sdapi/v1/options", "/api/events/"):
        assert keyed.get(path + query).status_code == 401, path
    assert keyed.head("/api/image" + query).status_code == 401  # GET only
    assert keyed.post("/api/events" + query).status_code == 401
    assert keyed.delete("/api/cancel" + query).status_code == 401
    assert keyed.get(f"/api/image?task_id={cancelled_task}&api_key=").get_json()["message"] == NO_KEY
    assert keyed.get(f"/api/image?task_id={cancelled_task}&api_key=nope").get_json()["message"] == WRONG_KEY


def test_any_one_right_key_among_those_presented_is_enough(keyed, cancelled_task):
    query = f"?task_id={cancelled_task}&api_key={KEY}"
    assert keyed.get("/api/image" + query, headers=bearer("stale")).status_code == 404
    assert keyed.get(f"/api/image?task_id={cancelled_task}&api_key=stale", headers=bearer(KEY)).status_code == 404


def test_a_keyed_client_is_its_key_and_its_address(keyed, service):
    digest = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    body = {"prompt": "whose", "width": 64, "height": 64, "steps": 1}
    first = keyed.post("/api/generate", json=body, headers=bearer(KEY)).get_json()["task_id"]
    other = keyed.post("/api/generate", json=body, headers=bearer(KEY), environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert service.task(first).client == f"key-{digest}@127.0.0.1"
    assert service.task(other.get_json()["task_id"]).client == f"key-{digest}@10.1.2.3"
    nowhere = keyed.post("/api/generate", json=body, headers=bearer(KEY), environ_base={"REMOTE_ADDR": ""})
    assert service.task(nowhere.get_json()["task_id"]).client == f"key-{digest}@"  # no address: the key alone


def test_the_api_document_describes_both_ways_and_requires_them_only_with_a_key(keyed, client):
    document = keyed.get("/openapi.json").get_json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "The server's --api-key, or a named key of its "
        "--api-keys-file, if it has any. A user key sees and manages its own tasks only (others' appear in the "
        "queue anonymised); an admin key all.",
    }  # fmt: skip
    assert schemes["apiKeyQuery"] == {
        "type": "apiKey", "in": "query", "name": "api_key",
        "description": "Only on GET /api/events, /api/image and /api/preview (EventSource and <img>).",
    }  # fmt: skip
    assert document["security"] == [{"bearerAuth": []}, {"apiKeyQuery": []}]
    assert "security" not in client.get("/openapi.json").get_json()


# -- the helpers -------------------------------------------------------------------------------------------


def test_parse_origins():
    assert parse_origins("*") == "*"
    assert parse_origins("") == "*"
    assert parse_origins("  ,, ") == "*"
    assert parse_origins("http://a.example") == ["http://a.example"]
    assert parse_origins("http://a.example,\thttp://b.example\n http://c.example") == [
        "http://a.example", "http://b.example", "http://c.example",
    ]  # fmt: skip
    assert parse_origins(["http://a.example", "http://b.example"]) == ["http://a.example", "http://b.example"]
    assert parse_origins(("http://a.example",)) == ["http://a.example"]
    assert parse_origins("* http://a.example") == "*"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
        ("LocalHost", True), ("[localhost]", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False),
        ("192.168.1.5", False), ("example.com", False), ("", False), ("localhost.example", False),
    ],
)  # fmt: skip
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_exposure_warning():
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("localhost", "") is None
    assert exposure_warning("0.0.0.0", "a key") is None
    warning = exposure_warning("0.0.0.0", None)
    assert warning == (
        "listening on 0.0.0.0 without an API key: anyone who can reach this address can queue and cancel tasks; "
        "set --api-key (or MFLUX_SERVER_API_KEY), or listen on 127.0.0.1"
    )
    assert exposure_warning("192.168.1.5", "").startswith("listening on 192.168.1.5 without an API key")
