"""HEAD and OPTIONS change nothing, on any route of any API (issue 14, item 5).

Flask answers HEAD with the GET view, so a GET that changes state (the original's `/api/image` deletes the
image it sends, `/api/cancel` and `/api/clear` cancel) would do the same for a HEAD, whose answer has no body:
the image would be gone unseen. Every route of the app's url_map is sent HEAD and OPTIONS (a CORS preflight
too), with a real task id of each state and `delete=true`, against a real server holding a finished task, a
running one and waiting ones; then nothing may have changed.
"""

from __future__ import annotations

import re

import pytest
import requests

from api import create_app
from harness.server_process import wait_for
from taskqueue.service import TaskService

# Values for the url_map's path variables: a file or model that exists, so the route's view really runs.
PATH_VALUES = {
    "/static/<path:filename>": "/static/index.html",
    "/ui/<path:filename>": "/ui/app.js",
    "/swagger-assets/<path:filename>": "/swagger-assets/swagger-ui.css",
    "/v1/models/<model_id>": "/v1/models/demo",
}
SLOW = {"width": 1024, "height": 1024, "steps": 100}  # about 200 s at --demo-speed 1: running all test long


def every_route(parts) -> list[str]:
    """Every path the app routes, its variables filled in."""
    app = create_app({"TESTING": True}, service=TaskService(parts))
    paths = []
    for rule in app.url_map.iter_rules():
        path = PATH_VALUES.get(rule.rule, rule.rule)
        assert "<" not in path, f"no value for the path variables of {rule.rule}: add one to PATH_VALUES"
        paths.append(path)
    return sorted(set(paths))


def queue_state(server, data_dir) -> dict:
    """Everything a HEAD or OPTIONS could change: tasks and their states, images, the default model, the worker."""
    listed = server.get("/api/tasks", params={"limit": 1000})
    return {
        "tasks": {task["task_id"]: task["status"] for task in listed.json()},
        "total": listed.headers["X-Total-Count"],
        "images": sorted(path.name for path in (data_dir / "images").iterdir()),
        "ps": {k: v for k, v in server.get("/api/ps").json().items() if k not in ("loaded", "loading")},
        "checkpoint": server.get("/sdapi/v1/options").json()["sd_model_checkpoint"],
        "worker_pid": server.worker_pid(),
    }


@pytest.fixture
def busy_server(server_factory, tmp_path):
    server = server_factory(demo_speed=1, data_dir=tmp_path / "server")
    done = server.generate("finished before the probes", width=64, height=64, steps=1)
    server.wait_status(done, "done")
    running = server.generate("running all along", **SLOW)
    wait_for(lambda: server.status(running)["status"] == "running", what="the slow task to run")
    waiting = [server.generate(f"waiting {n}", width=64, height=64, steps=1) for n in range(2)]
    return server, {"done": done, "running": running, "waiting": waiting[0], "also waiting": waiting[1]}


def probes(paths: list[str], task_ids: dict[str, str]):
    """(method, path, query, headers) for each probe: bare, and with each task's id and delete=true."""
    preflight = {"Origin": "http://example.com", "Access-Control-Request-Method": "POST"}
    queries = [None] + [{"task_id": task_id, "delete": "true", "id_task": task_id} for task_id in task_ids.values()]
    for path in paths:
        for query in queries:
            yield "HEAD", path, query, {}
            yield "OPTIONS", path, query, {}
            yield "OPTIONS", path, query, preflight


def test_head_and_options_change_nothing_on_any_route(busy_server, parts_factory):
    server, task_ids = busy_server
    data_dir = server.data_dir
    before = queue_state(server, data_dir)
    assert set(before["tasks"].values()) == {"done", "running", "waiting"}, before
    answered = {}
    for method, path, query, headers in probes(every_route(parts_factory("routes")), task_ids):
        body = {"prompt": "an OPTIONS body", "model": "demo", "sd_model_checkpoint": "demo"}  # a view must not see it
        response = requests.request(method, server.url + path, params=query, headers=headers, json=body, timeout=30)
        answered[(method, path)] = response.status_code
        problem = (method, path, query, response.status_code, response.text[:300])
        assert response.status_code < 500 or response.status_code == 501, problem  # 501: A1111's unsupported
        if method == "HEAD":
            assert not response.content, (method, path)
    after = queue_state(server, data_dir)
    assert after == before
    image = server.get("/api/image", params={"task_id": task_ids["done"]})
    assert image.status_code == 200 and image.content, image.text[:300]  # still there, fetched only now
    for path in ("/api/image", "/api/cancel", "/api/clear", "/api/events", "/api/preview"):
        assert answered[("HEAD", path)] in (200, 204, 404, 405, 422), (path, answered[("HEAD", path)])


def test_head_of_an_image_answers_its_headers_without_deleting_it(busy_server):
    server, task_ids = busy_server
    query = {"task_id": task_ids["done"]}  # delete defaults to true, as in the original
    head = requests.head(server.url + "/api/image", params=query, timeout=30)
    assert head.status_code == 200 and head.headers["Content-Type"].startswith("image/"), head.headers
    image = server.get("/api/image", params=query)
    assert image.status_code == 200
    assert int(head.headers["Content-Length"]) == len(image.content)
    gone = requests.head(server.url + "/api/image", params=query, timeout=30)  # now fetched and deleted: 404 too
    assert gone.status_code == 404


@pytest.mark.parametrize("path", ["/api/cancel", "/api/clear"])
def test_head_of_a_cancelling_get_is_refused_with_allow(busy_server, path):
    server, task_ids = busy_server
    response = requests.head(server.url + path, params={"task_id": task_ids["waiting"]}, timeout=30)
    assert response.status_code == 405
    allowed = set(re.split(r"\s*,\s*", response.headers["Allow"]))
    assert "HEAD" not in allowed and {"GET", "DELETE"} <= allowed
    assert server.status(task_ids["waiting"])["status"] == "waiting"
