"""Long-held requests against the real server: the cap on blocking OpenAI/A1111 calls and event streams
(api/slots.py: at most --threads − 4 at once), and what a blocking OpenAI call answers when its image is
cancelled on the server while it waits."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import openai
import pytest
import requests
from werkzeug.test import Client

from api import create_app
from core.submissions import GenerationRequest
from harness.server_process import RunningServer, wait_for
from tests.support.sse import open_stream, read_events

# At demo speed 1 a 1536² step takes ~6 s: an image of the engine's default 4 steps holds its call ~25 s.
LONG_OPENAI = {"prompt": "holds a slot", "size": "1536x1536", "response_format": "b64_json"}


def in_background(call, *args, **kwargs) -> Future:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def tasks_with(server: RunningServer, prompt: str, *statuses: str) -> list[dict]:
    params = {"status": list(statuses or ("waiting", "running", "done", "failed", "cancelled"))}
    return [t for t in server.get("/api/tasks", params=params).json() if t["prompt"] == prompt]


def test_blocking_calls_beyond_the_cap_get_503_in_their_apis_shape_and_short_requests_still_answer(
    server_factory,
):
    server = server_factory("--threads", "6", demo_speed=1)  # 6 threads: 2 slots for long-held requests
    holder = in_background(requests.post, server.url + "/v1/images/generations", json=LONG_OPENAI, timeout=120)
    (held,) = wait_for(lambda: tasks_with(server, "holds a slot", "running"), 30, what="the blocking call's task")
    stream = wait_for(
        lambda: (r := open_stream(server.url, held["task_id"])).status_code == 200 and r, 10, what="a second slot"
    )
    try:
        openai_refused = server.post("/v1/images/generations", json={"prompt": "one too many", "size": "64x64"})
        assert openai_refused.status_code == 503, openai_refused.text
        assert openai_refused.headers["Retry-After"] == "5"
        body = openai_refused.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "server_error"
        assert "2 long-running requests" in body["error"]["message"]

        a1111_refused = server.post("/sdapi/v1/txt2img", json={"prompt": "one too many", "width": 64, "height": 64})
        assert a1111_refused.status_code == 503, a1111_refused.text
        assert a1111_refused.headers["Retry-After"] == "5"
        body = a1111_refused.json()
        assert set(body) == {"error", "detail", "body", "errors"}
        assert "2 long-running requests" in body["detail"]

        # The short requests still have threads, and answer at once.
        started = time.monotonic()
        assert server.status(held["task_id"])["status"] == "running"
        assert server.get("/api/tasks").status_code == 200
        assert server.get("/sdapi/v1/progress").status_code == 200
        assert server.get("/api/health").json()["ok"]
        assert time.monotonic() - started < 2.0
        # A refused call queued nothing.
        assert tasks_with(server, "one too many") == []
    finally:
        stream.close()
        server.get("/api/clear")
    # The held call ends with the cancel (409, see below), and both slots are free again.
    assert holder.result(timeout=30).status_code == 409
    served = wait_for(
        lambda: (
            (
                r := server.post(
                    "/sdapi/v1/txt2img", json={"prompt": "room again", "width": 64, "height": 64, "steps": 1}
                )
            ).status_code
            != 503
            and r
        ),
        10,
        interval=0.1,
        what="a slot to be free again",
    )
    assert served.status_code == 200 and len(served.json()["images"]) == 1


@pytest.fixture
def openai_server(server_factory) -> RunningServer:
    return server_factory(demo_speed=1)


def test_an_image_cancelled_on_the_server_is_a_409_the_openai_client_does_not_retry(openai_server):
    server = openai_server
    # The package's default: 2 retries, and 409 is among the statuses it retries unless told not to.
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none set")
    assert client.max_retries == 2
    prompt = "cancelled while its caller waits"
    call = in_background(client.images.generate, prompt=prompt, size="1536x1536", response_format="b64_json")
    (task,) = wait_for(lambda: tasks_with(server, prompt, "running"), 30, what="the call's task to run")
    assert not call.done()  # the call blocks while its image is made
    assert server.get("/api/cancel", params={"task_id": task["task_id"]}).json()["cancelled"]

    with pytest.raises(openai.ConflictError) as caught:
        call.result(timeout=30)
    error = caught.value
    assert error.status_code == 409
    assert error.response.headers["x-should-retry"] == "false"
    assert error.body["code"] == "cancelled" and "cancelled on the server" in error.body["message"]
    # Raised only after any retries: had the client sent the request again, there would be more tasks.
    assert [t["task_id"] for t in tasks_with(server, prompt)] == [task["task_id"]]


def test_a_blocking_call_and_an_event_stream_share_the_slots(server_factory):
    """Event streams count against the same cap: with the one slot of --threads 5 taken by a stream, a blocking
    call is refused; once the stream ends, the slot is free for it."""
    server = server_factory("--threads", "5", demo_speed=1)  # 1 slot
    blocker = server.generate("blocker", width=1536, height=1536, steps=4)
    stream = open_stream(server.url, blocker)
    assert stream.status_code == 200
    events = read_events(stream)
    assert next(events).retry == 3000  # the stream is being served: it holds the slot now
    refused = server.post("/v1/images/generations", json={"prompt": "no slot", "size": "64x64"})
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "server_error"
    stream.close()
    server.get("/api/cancel", params={"task_id": blocker})
    served = wait_for(
        lambda: (
            (r := server.post("/v1/images/generations", json={"prompt": "a slot", "size": "64x64"})).status_code != 503
            and r
        ),
        10,
        interval=0.1,
        what="the stream's slot to be released",
    )
    assert served.status_code == 200 and len(served.json()["data"]) == 1


def test_blocking_calls_do_not_keep_the_admission_gate_from_short_requests(server_factory):
    """Two requests at a time run the app (api/slots.py, AdmissionGate). A blocking call steps aside while it
    waits: three of them waiting for their images, and a model load, leave the gate to the short requests."""
    server = server_factory(demo_speed=1)
    calls = [
        in_background(
            requests.post, server.url + "/v1/images/generations", json={**LONG_OPENAI, "prompt": f"w{i}"}, timeout=120
        )
        for i in range(3)
    ]
    wait_for(lambda: all(tasks_with(server, f"w{i}") for i in range(3)), 30, what="the three blocking calls' tasks")
    loading = in_background(requests.post, server.url + "/api/load", json={"model": "demo-fast"}, timeout=120)
    try:
        started = time.monotonic()
        for _ in range(3):
            assert server.get("/api/tasks", timeout=10).status_code == 200
            assert server.get("/api/info", timeout=10).status_code == 200
            assert server.post("/api/generate", json={"prompt": "short", "width": 64, "height": 64}).status_code == 200
        assert time.monotonic() - started < 10
    finally:
        server.get("/api/clear")
    assert all(call.result(timeout=60).status_code == 409 for call in calls)  # cancelled by the clear
    assert loading.result(timeout=120).status_code in (200, 503)


def test_status_polls_take_their_turn_at_the_admission_gate(service, monkeypatch):
    """Status polls once ran beside the gate: under a mix of polls, task pages and submissions, fifteen polling
    threads were the convoy the gate was meant to stop (a page's median 55 ms; BENCHMARKS.md, benchmark 2)."""
    app = create_app({"TESTING": True, "MFLUX_ADMITTED_REQUESTS": 1}, service=service)
    first, second = (service.submit(GenerationRequest(f"task {i}", width=64, height=64)).task.id for i in range(2))
    inside, peak, release, lock = [0], [0], threading.Event(), threading.Lock()
    real_status = service.status

    def status(task_id, *args, **kwargs):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        try:
            if task_id == first:
                release.wait(30)  # a slow request, holding the one permit
            return real_status(task_id, *args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(service, "status", status)
    answers = {}
    threads = [threading.Thread(target=lambda i=i: answers.setdefault(i, Client(app).get(f"/api/status?task_id={i}")))
               for i in (first, second)]  # fmt: skip
    threads[0].start()
    wait_for(lambda: inside[0] == 1, 10, interval=0.005, what="the first poll inside the app")
    threads[1].start()
    gate = app.wsgi_app
    wait_for(lambda: gate.waiting == 1, 10, interval=0.005, what="the second poll waiting at the gate")
    assert inside[0] == 1
    release.set()
    for thread in threads:
        thread.join(30)
    assert peak[0] == 1
    assert answers[first].status_code == answers[second].status_code == 200
