"""The shortcuts on the hottest requests answer exactly what the long way answers.

GET /api/status has a fast path in front of Flask (api/fast_status.py): same bytes as the Flask view, and it
steps aside for everything it must not handle (unknown ids, CORS requests, API keys, other query strings).
GET /api/tasks skips flask-smorest's re-serialization: the presenter's output must already be the schema's.
"""

from __future__ import annotations

import random

import pytest
from werkzeug.test import Client

from api import create_app
from api.fast_status import StatusFastPath
from api.slots import AdmissionGate
from api.tasks.presenters import task_of
from api.tasks.schemas import TaskSchema
from core.models import Variant
from core.submissions import GenerationRequest
from core.tasks import GenerationParams, OutputSpec, TaskStatus
from taskqueue.store import NewTask, TaskStore

# Headers that legitimately differ between two answers. (The `service` fixture's worker is not started:
# tasks stay waiting and their forecast does not move with the clock.)
VOLATILE = {"date", "server"}


def make_app(service, **config):
    app = create_app({"TESTING": True, **config}, service=service)
    gate = app.wsgi_app
    assert isinstance(gate, AdmissionGate)  # outermost: status polls wait their turn too
    fast = gate.wrapped
    assert isinstance(fast, StatusFastPath)
    calls = []
    wrapped = fast.wrapped

    def counting(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return wrapped(environ, start_response)

    fast.wrapped = counting
    return app, Client(fast), Client(wrapped), calls


def headers(response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in VOLATILE}


def queue(service, count: int = 3) -> list[str]:
    requests = [GenerationRequest(f"task {i}", width=512, height=384, steps=3) for i in range(count)]
    return [service.submit(request).task.id for request in requests]


def test_fast_answers_are_byte_for_byte_those_of_the_flask_view(service):
    cancelled, *ids = queue(service, 4)
    service.cancel(cancelled)
    _, fast, flask, calls = make_app(service)
    for task_id in ids:
        fast.get(f"/api/status?task_id={task_id}")  # the first one teaches the fast path Flask's headers
    calls.clear()
    for task_id in ids:
        answer = fast.get(f"/api/status?task_id={task_id}")
        reference = flask.get(f"/api/status?task_id={task_id}")
        assert answer.status_code == reference.status_code == 200
        assert answer.data == reference.data
        assert headers(answer) == headers(reference)
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert calls == [], "the fast path handed eligible requests to Flask"
    # A cancelled task answers 410, from Flask: the fast path steps aside for it.
    answer = fast.get(f"/api/status?task_id={cancelled}")
    assert answer.status_code == 410 and answer.json["status"] == "cancelled"
    assert answer.data == flask.get(f"/api/status?task_id={cancelled}").data
    assert calls == ["/api/status"]


def test_memoized_answers_follow_queue_changes(service):
    first, second = queue(service, 2)
    _, fast, _, _ = make_app(service)
    fast.get(f"/api/status?task_id={second}")
    assert fast.get(f"/api/status?task_id={second}").json["pos"] == 1
    service.cancel(first)
    assert fast.get(f"/api/status?task_id={second}").json["pos"] == 0
    gone = fast.get(f"/api/status?task_id={first}")
    assert gone.status_code == 410 and gone.json["status"] == "cancelled"
    (later,) = queue(service, 1)  # joins the end of the queue: nothing memoized changes
    assert fast.get(f"/api/status?task_id={second}").json["pos"] == 0
    assert fast.get(f"/api/status?task_id={later}").json["pos"] == 1
    urgent = service.submit(GenerationRequest("urgent", width=256, height=256, steps=1, priority=True)).task.id
    assert fast.get(f"/api/status?task_id={second}").json["pos"] == 1
    assert fast.get(f"/api/status?task_id={urgent}").json["pos"] == 0
    assert fast.get(f"/api/status?task_id={later}").json["pos"] == 2


@pytest.mark.parametrize(
    ("query", "status"),
    [("task_id=0123456789abcdef", 404), ("task_id=XYZ", 404), ("", 422), ("task_id={id}&extra=1", 200)],
)
def test_what_the_fast_path_does_not_answer_goes_to_flask(service, query, status):
    (task_id,) = queue(service, 1)
    _, fast, _, calls = make_app(service)
    fast.get(f"/api/status?task_id={task_id}")
    calls.clear()
    answer = fast.get("/api/status?" + query.format(id=task_id))
    assert answer.status_code == status
    assert set(answer.json) >= ({"code", "message"} if status >= 400 else {"task_id", "pos"})
    assert calls == ["/api/status"]


def test_cors_requests_get_flask_cors_answers(service):
    (task_id,) = queue(service, 1)
    _, fast, _, calls = make_app(service, MFLUX_CORS_ORIGINS="https://ui.example")
    fast.get(f"/api/status?task_id={task_id}")
    calls.clear()
    allowed = fast.get(f"/api/status?task_id={task_id}", headers={"Origin": "https://ui.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    refused = fast.get(f"/api/status?task_id={task_id}", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert calls == ["/api/status", "/api/status"]


def test_an_api_key_is_never_bypassed(service):
    (task_id,) = queue(service, 1)
    _, fast, _, _ = make_app(service, MFLUX_API_KEY="sekrit")
    for _ in range(3):
        assert fast.get(f"/api/status?task_id={task_id}").status_code == 401
    ok = fast.get(f"/api/status?task_id={task_id}", headers={"Authorization": "Bearer sekrit"})
    assert ok.status_code == 200 and ok.json["task_id"] == task_id


def test_the_fast_path_knows_every_request_hook(service):
    """A new before/after-request hook would not run on the fast path: review api/fast_status.py, then this."""
    app, _, _, _ = make_app(service)
    known_before = {
        "_require_key",  # api/auth.py: the fast path steps aside whenever a key is configured
        "_allow_images_where_taken",  # api/bodies.py: only for views that take images, which status is not
    }
    known_after = {"cors_after_request"}  # flask-cors: its headers are learned from Flask's own answer
    known_teardown = {"_release_slot"}  # api/bodies.py: the slot _allow_images_where_taken may take
    assert {f.__name__ for funcs in app.before_request_funcs.values() for f in funcs} == known_before
    assert {f.__name__ for funcs in app.after_request_funcs.values() for f in funcs} == known_after
    assert {f.__name__ for funcs in app.teardown_request_funcs.values() for f in funcs} == known_teardown
    assert not any(app.url_value_preprocessors.values())


def test_task_pages_are_already_what_task_schema_dumps(service):
    ids = queue(service)
    service.cancel(ids[0])
    views, _ = service.listed()
    assert len(views) == len(ids)
    for view in views:
        shown = task_of(view)
        assert TaskSchema().dump(shown) == shown


# -- the store's shortcuts: the planner's lazily read queue and index-ordered listings against plain queries ------

BRUTE_ORDER = "CASE status WHEN 'running' THEN 0 WHEN 'waiting' THEN 1 ELSE 2 END, priority DESC, seq"


def shuffle_queue(store, rng: random.Random, operations: int) -> None:
    for _ in range(operations):
        roll = rng.random()
        waiting = store.listed([TaskStatus.WAITING], 10_000, 0)[0]
        if roll < 0.55 or not waiting:
            width, height = rng.choice((256, 512, 1024)), rng.choice((256, 768))
            params = GenerationParams("p", 1, width, height, rng.randint(1, 8), 3.5)
            variant = Variant(rng.choice(("demo", "demo-fast")))
            store.add(NewTask(params, OutputSpec(), rng.random() < 0.2, "demo", variant, "c"))
        elif roll < 0.7:
            store.claim_next()
        elif roll < 0.8:
            store.cancel(rng.choice(waiting).id)
        elif roll < 0.9 and store.running():
            task = rng.choice(store.running())
            if rng.random() < 0.5:
                store.requeue(task.id, count_attempt=False)
            else:
                store.mark_done(task.id, 1.0, 10)
        else:
            store.expire(2.0)


@pytest.mark.parametrize("seed", range(4))
def test_the_queue_and_listings_match_the_plain_queries(tmp_path, seed):
    rng = random.Random(seed)
    store = TaskStore(tmp_path / "tasks.sqlite3", clock=lambda: 1.0)
    db = store._read()
    for _ in range(8):
        shuffle_queue(store, rng, 40)
        waiting = db.execute("SELECT * FROM tasks WHERE status = 'waiting' ORDER BY priority DESC, seq").fetchall()
        assert store.count_waiting() == len(waiting)
        queue = list(store.queue())
        assert [q.id for q in queue] == [row["id"] for row in waiting]
        assert [(q.variant, q.steps, q.megapixels) for q in queue] == [
            (row["variant"], row["steps"], row["width"] * row["height"] / 1048576) for row in waiting
        ]
        newest = max((row["seq"] for row in waiting if not row["priority"]), default=0)
        middle = sorted(row["seq"] for row in waiting if not row["priority"])[len(waiting) // 3 :][:1] or [newest]
        joined = [q.id for q in store.queue(after_seq=middle[0])]
        assert joined == [row["id"] for row in waiting if not row["priority"] and row["seq"] > middle[0]]
        urgent = [row for row in waiting if row["priority"]]
        since = urgent[len(urgent) // 2]["seq"] if urgent else 0
        joined = [q.id for q in store.queue(after_seq=since, priority=True)]
        assert joined == [row["id"] for row in urgent if row["seq"] > since]
        for statuses in (tuple(TaskStatus), (TaskStatus.WAITING,), (TaskStatus.RUNNING, TaskStatus.CANCELLED)):
            marks = ",".join(f"'{s.value}'" for s in statuses)
            where = f"status IN ({marks}) AND NOT (status = 'done' AND fetched_at IS NOT NULL)"
            everything = [r["id"] for r in db.execute(f"SELECT id FROM tasks WHERE {where} ORDER BY {BRUTE_ORDER}")]
            for limit, offset in ((1000, 0), (7, 0), (7, 5), (3, len(everything) - 2), (5, len(everything) + 3)):
                tasks, total = store.listed(statuses, limit, offset)
                assert total == len(everything)
                assert [t.id for t in tasks] == everything[offset : offset + limit]
    store.close()
