"""Named API keys (--api-keys-file), against the real server: each user key's tasks are its own on every API.

alice and bob hold user keys, ops an admin key, and the server has the single --api-key too (env), an admin key.
A user key asking for another key's task gets the very 404 an unknown id gets; in the queue listing it sees the
other keys' running and waiting tasks anonymised (no id, no prompt), their finished ones not at all.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from harness.server_process import RunningServer, wait_for
from tests.support.sse import read_events
from tests.test_limits import client_at

ALICE, BOB, OPS = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "ops-key-0123456789abcdef"
LEGACY = "the-single-api-key-0123456789"
KEYS_FILE = f"""
[keys.alice]
key = "{ALICE}"
role = "user"
max_waiting = 2

[keys.bob]
key = "{BOB}"

[keys.ops]
key = "{OPS}"
role = "admin"
"""
PER_CLIENT = 3  # --max-waiting-per-client: bob's cap (alice has her own)
LONG = {"prompt": "alice's secret lighthouse", "width": 1024, "height": 1024, "steps": 100}  # ~50 s at speed 4
SMALL = {"width": 256, "height": 256, "steps": 2}
UNKNOWN = "0123456789abcdef"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class As:
    """One key's view of the server."""

    def __init__(self, server: RunningServer, key: str, session: requests.Session | None = None) -> None:
        self.server, self.key, self.session = server, key, session or requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", auth(self.key))
        return self.session.get(self.server.url + path, headers=headers, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.server.url + path, headers=auth(self.key), timeout=30, **kwargs)

    def generate(self, prompt: str, **params) -> str:
        response = self.post("/api/generate", json={"prompt": prompt, **SMALL, **params})
        assert response.status_code == 200, response.text
        return response.json()["task_id"]

    def status(self, task_id: str) -> dict:
        return self.get("/api/status", params={"task_id": task_id}).json()

    def wait_status(self, task_id: str, *statuses: str) -> dict:
        return wait_for(lambda: (s := self.status(task_id))["status"] in statuses and s, 60, what=f"{statuses}")

    def tasks(self, **params) -> list[dict]:
        response = self.get("/api/tasks", params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("named-keys")
    keys = directory / "keys.toml"
    keys.write_text(KEYS_FILE, encoding="utf-8")
    args = ["--api-keys-file", str(keys), "--max-waiting-per-client", str(PER_CLIENT)]
    server = RunningServer(directory / "data", args, demo_speed=4, env={"MFLUX_SERVER_API_KEY": LEGACY})
    server.start(wait_ready=False)  # the readiness probe has no key
    wait_for(lambda: server.get("/api/health", headers=auth(OPS)).json().get("model_loaded"), 60, what="the engine")
    yield server
    assert server.stop() == 0, server.log_text()


@pytest.fixture
def alice(server):
    return As(server, ALICE)


@pytest.fixture
def bob(server):
    return As(server, BOB)


@pytest.fixture
def ops(server):
    """The admin; afterwards it clears the queue and waits for the engine to be idle, for the next test."""
    admin = As(server, OPS)
    yield admin
    admin.get("/api/clear")
    wait_for(lambda: not admin.tasks(status=["running", "waiting"]), 30, what="an idle queue")


def same_404(asker: As, path: str, task_id: str, **params) -> None:
    """Asking for `task_id` answers exactly what asking for an id that never existed does."""
    theirs = asker.get(path, params={"task_id": task_id, **params})
    never = asker.get(path, params={"task_id": UNKNOWN, **params})
    assert theirs.status_code == never.status_code == 404, (path, theirs.text)
    assert theirs.text.replace(task_id, UNKNOWN) == never.text, (path, theirs.text, never.text)


def test_a_user_key_neither_sees_nor_touches_another_keys_tasks_on_api(server, alice, bob, ops):
    running = alice.generate(**LONG)
    alice.wait_status(running, "running")
    waiting = alice.generate("alice's second secret")
    for task_id in (running, waiting):
        for path, params in [("/api/status", {}), ("/api/image", {}), ("/api/image", {"delete": "true"}),
                             ("/api/preview", {}), ("/api/events", {}), ("/api/cancel", {})]:  # fmt: skip
            same_404(bob, path, task_id, **params)
        deleted = bob.session.delete(server.url + "/api/cancel", params={"task_id": task_id}, headers=auth(BOB))
        assert deleted.status_code == 404
    assert alice.status(running)["status"] == "running" and alice.status(waiting)["status"] == "waiting"

    # The queue, as bob sees it: alice's tasks where they stand, nothing that says what or which they are.
    own = bob.generate("bob's own picture")
    listing = bob.get("/api/tasks")
    assert "secret" not in listing.text and running not in listing.text and waiting not in listing.text
    tasks = listing.json()
    assert [(t["status"], t["anonymous"]) for t in tasks] == [("running", True), ("waiting", True), ("waiting", False)]
    first, second, mine = tasks
    assert first["task_id"] is None and first["prompt"] is None and first["seed"] is None
    assert (first["width"], first["height"], first["steps"]) == (1024, 1024, 100) and first["wait_remaining"] > 0
    assert second["task_id"] is None and second["pos"] == 0 and mine["pos"] == 1
    assert mine["task_id"] == own and mine["prompt"] == "bob's own picture"
    assert listing.headers["X-Total-Count"] == "3"
    # ... and as alice sees it: hers in full, bob's anonymised.
    assert [(t["task_id"], t["prompt"]) for t in alice.tasks()] == [
        (running, LONG["prompt"]), (waiting, "alice's second secret"), (None, None)
    ]  # fmt: skip

    # bob's clear cancels bob's tasks only.
    assert bob.get("/api/clear").json() == {"cancelled": 1, "task_ids": [own]}
    assert alice.status(running)["status"] == "running" and alice.status(waiting)["status"] == "waiting"
    assert bob.status(own)["status"] == "cancelled"
    assert [t["task_id"] for t in bob.tasks() if not t["anonymous"]] == [own]  # its own finished ones, listed

    # An admin key sees and manages everything.
    prompts = {t["prompt"]: t["status"] for t in ops.tasks()}
    assert prompts == {LONG["prompt"]: "running", "alice's second secret": "waiting", "bob's own picture": "cancelled"}
    assert not any(t["anonymous"] for t in ops.tasks())
    assert ops.get("/api/cancel", params={"task_id": waiting}).json()["cancelled"] is True
    assert alice.status(waiting)["status"] == "cancelled"


def test_the_single_api_key_is_an_admin_key(server, alice, ops):
    legacy = As(server, LEGACY)
    task_id = alice.generate("alice's private picture")
    alice.wait_status(task_id, "done")
    assert "alice's private picture" in [t["prompt"] for t in legacy.tasks()]
    assert not any(t["anonymous"] for t in legacy.tasks())
    assert legacy.status(task_id)["status"] == "done"
    image = legacy.get("/api/image", params={"task_id": task_id, "delete": "false"})
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"
    running = alice.generate(**LONG)
    alice.wait_status(running, "running")
    assert legacy.get("/api/cancel", params={"task_id": running}).json()["cancelled"] is True
    assert legacy.get("/api/info").json()["auth_required"] is True


def test_images_events_previews_and_workers_of_a_task_are_its_keys_only(server, alice, bob, ops):
    done = alice.generate("alice's finished secret")
    alice.wait_status(done, "done")
    same_404(bob, "/api/image", done, delete="true")
    listing = bob.get("/api/tasks")  # another key's finished task is not listed at all, not even anonymised
    assert done not in listing.text and not any(t["anonymous"] for t in listing.json())
    # EventSource and <img> pass the key in the query: the same rule.
    query = {"task_id": done, "api_key": BOB}
    assert requests.get(server.url + "/api/events", params=query, timeout=10).status_code == 404
    assert requests.get(server.url + "/api/image", params=query, timeout=10).status_code == 404
    with requests.get(server.url + "/api/events", params={**query, "api_key": ALICE}, stream=True, timeout=10) as s:
        assert [m.event for m in read_events(s) if m.event] == ["done"]
    image = alice.get("/api/image", params={"task_id": done})  # delete=true: hers to take
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"

    running = alice.generate(**LONG)
    preview = wait_for(
        lambda: (r := alice.get("/api/preview", params={"task_id": running})).status_code == 200 and r, 30,
        what="alice's preview",
    )  # fmt: skip
    assert preview.headers["Content-Type"] == "image/jpeg"
    same_404(bob, "/api/preview", running)
    assert requests.get(server.url + "/api/preview", params={"task_id": running, "api_key": BOB}).status_code == 404

    # The workers panel: bob sees the worker busy and how far it is, not whose or which task.
    worker = bob.get("/api/workers").json()[0]
    assert worker["state"] == "busy" and worker["task_id"] is None
    assert worker["steps"] == 100 and 0 <= worker["step"] <= 100
    assert alice.get("/api/workers").json()[0]["task_id"] == running
    assert ops.get("/api/workers").json()[0]["task_id"] == running


def test_openai_calls_of_one_key_are_hidden_from_another(server, alice, bob, ops):
    blocker = ops.generate("the admin's long task", **{k: v for k, v in LONG.items() if k != "prompt"})
    ops.wait_status(blocker, "running")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=ALICE, max_retries=0)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(client.images.generate, prompt="alice's openai secret", size="256x256",
                           response_format="url")  # fmt: skip
        queued = wait_for(lambda: [t for t in alice.tasks() if t["status"] == "waiting"], 30, what="alice's call")
        assert queued[0]["prompt"] == "alice's openai secret"
        listing = bob.get("/api/tasks")
        assert "openai secret" not in listing.text and queued[0]["task_id"] not in listing.text
        queue = [t["anonymous"] for t in listing.json() if t["status"] in ("running", "waiting")]
        assert queue == [True, True]  # the admin's and alice's
        same_404(bob, "/api/cancel", queued[0]["task_id"])
        assert bob.get("/api/clear").json()["cancelled"] == 0
        assert ops.get("/api/cancel", params={"task_id": blocker}).json()["cancelled"] is True
        result = call.result(timeout=60)
    url = result.data[0].url
    assert "/api/image?" in url
    task_id = url.split("task_id=")[1].split("&")[0]
    same_404(bob, "/api/image", task_id)
    assert requests.get(url, headers=auth(BOB), timeout=10).status_code == 404
    answer = requests.get(url, headers=auth(ALICE), timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"


def test_a1111_progress_and_interrupt_concern_only_the_callers_key(server, alice, bob, ops):
    def basic(key: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"webui:{key}".encode()).decode()}

    def progress(key: str) -> dict:
        response = requests.get(server.url + "/sdapi/v1/progress", headers=basic(key), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(requests.post, server.url + "/sdapi/v1/txt2img", json=LONG, headers=basic(ALICE),
                           timeout=120)  # fmt: skip
        mine = wait_for(lambda: (p := progress(ALICE))["state"]["sampling_step"] >= 1 and p, 30, what="a step")
        assert mine["state"]["job_count"] == 1
        theirs = progress(BOB)
        assert theirs["state"]["job_count"] == 0 and theirs["current_image"] is None and theirs["textinfo"] is None
        step = progress(ALICE)["state"]["sampling_step"]
        assert requests.post(server.url + "/sdapi/v1/interrupt", headers=basic(BOB), timeout=10).json() == {}
        assert requests.post(server.url + "/sdapi/v1/skip", headers=basic(BOB), timeout=10).json() is None
        wait_for(lambda: progress(ALICE)["state"]["sampling_step"] > step, 30, what="alice's next step")
        assert not call.done()
        assert requests.post(server.url + "/sdapi/v1/interrupt", headers=basic(ALICE), timeout=10).json() == {}
        answer = call.result(timeout=30)
    assert answer.status_code == 200
    assert progress(ALICE)["state"]["job_count"] == 0


def test_waiting_caps_are_per_key_wherever_it_is_used_from(server, alice, bob, ops):
    blocker = ops.generate("the admin's long task", **{k: v for k, v in LONG.items() if k != "prompt"})
    ops.wait_status(blocker, "running")
    elsewhere = As(server, ALICE, client_at("127.0.0.2"))
    assert alice.generate("one") and elsewhere.generate("two")  # alice's own cap: 2, from any address
    for asker in (alice, elsewhere):
        refused = asker.post("/api/generate", json={"prompt": "three", **SMALL})
        assert refused.status_code == 429, refused.text
        assert "You have 2 tasks waiting" in refused.json()["message"] and refused.headers["Retry-After"]
    # bob, from the same address as alice, has his own room: the server's per-client cap.
    for n in range(PER_CLIENT):
        bob.generate(f"bob {n}")
    refused = bob.post("/api/generate", json={"prompt": "one too many", **SMALL})
    assert refused.status_code == 429 and f"You have {PER_CLIENT} tasks waiting" in refused.json()["message"]
    # An admin key has the server's cap per key too; the queue holds everyone's.
    assert len(ops.tasks(status=["waiting"])) == 2 + PER_CLIENT


def test_an_events_stream_of_a_running_task_is_its_keys(server, alice, bob, ops):
    running = alice.generate(**LONG)
    with requests.get(
        server.url + "/api/events", params={"task_id": running, "api_key": ALICE}, stream=True, timeout=30
    ) as stream:
        events = read_events(stream)
        seen = next(m for m in events if m.event in ("queued", "progress"))
        assert seen.data["task_id"] == running
        same_404(bob, "/api/events", running)
        assert ops.get("/api/cancel", params={"task_id": running}).status_code == 200
        assert next(m for m in events if m.event == "cancelled").data == {"task_id": running}


def test_keys_file_with_a_problem_stops_the_server_at_start(server_factory, tmp_path):
    bad = tmp_path / "keys.json"
    bad.write_text(json.dumps({"keys": {"eve": {"key": "tooshort-42", "role": "user"}}}), encoding="utf-8")
    server = server_factory("--api-keys-file", str(bad), start=False)
    with pytest.raises(RuntimeError, match="key 'eve': 'key' must be a secret of at least 16 characters"):
        server.start(wait_ready=False)
    assert server.process.returncode == 2 and "tooshort-42" not in server.log_text()  # no secret in the log


def test_only_an_admin_key_changes_the_default_model_everyone_gets(server, alice, ops):
    refused = alice.post("/api/load", json={"model": "demo-fast"})
    assert refused.status_code == 403 and "admin key" in refused.json()["message"]
    options = alice.post("/sdapi/v1/options", json={"sd_model_checkpoint": "demo-fast"})
    assert options.status_code == 403 and "admin key" in str(options.json())
    assert ops.post("/api/load", json={"model": "demo"}).status_code == 200
