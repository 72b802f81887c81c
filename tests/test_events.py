"""GET /api/events (Server-Sent Events) and GET /api/preview, against the real server (waitress + worker)."""

from __future__ import annotations

import io
import time

import pytest
import requests
from PIL import Image

from harness.server_process import RunningServer, wait_for
from tests.support.sse import open_stream, read_events

# Demo-engine durations at speed 2: a 1024² step takes ~1 s, a 512² step ~0.2 s.
BLOCKER = {"prompt": "a long task ahead", "width": 1024, "height": 1024, "steps": 6}
FOLLOWED = {"prompt": "the task followed", "width": 512, "height": 512, "steps": 8}


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """Slow enough to watch tasks wait and run; 6 threads leave 2 slots for streams; keepalives every 0.3 s."""
    env = {"MFLUX_SERVER_MFLUX_SSE_KEEPALIVE_SECONDS": "0.3"}
    args = ("--threads", "6")
    with RunningServer(tmp_path_factory.mktemp("events") / "data", args, demo_speed=2, env=env) as server:
        yield server


@pytest.fixture
def server(slow_server):
    yield slow_server
    slow_server.get("/api/clear")  # leave no task running into the next test


def test_events_arrive_as_they_happen_then_the_stream_ends(server):
    """Deterministic: nothing here depends on the stream's 4-a-second sampling catching a brief state (it used
    to require the 8/8 event, which lasts only from the last step to the end of encoding: ~1 in 24 runs under
    load missed it). What must hold whatever the sampling: the first event comes while the task waits (it waits
    until the test cancels the blocker), steps only ever go up, and the final event ends the stream."""
    blocker = server.generate(**BLOCKER)
    followed = server.generate(**FOLLOWED)
    seen = []
    first_mid_step_status = None
    with open_stream(server.url, followed) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        messages = read_events(response)
        assert next(messages).retry == 3000  # the reconnect hint comes first
        first = next(messages)
        # Received while the task still waits behind the blocker: the stream is not buffered until the end.
        assert first.event == "queued" and first.id == "queued-0"
        assert first.data["task_id"] == followed and first.data["pos"] == 0 and first.data["wait_remaining"] > 0
        assert server.status(followed)["status"] == "waiting"  # it cannot run: the blocker holds the engine
        server.get("/api/cancel", params={"task_id": blocker})  # let it run now
        for message in messages:
            mid_step = message.event == "progress" and 0 < message.data["step"] < message.data["steps"]
            if mid_step and first_mid_step_status is None:
                # The first step's event, with most of the task's steps (~1 s) still ahead: it is not done.
                first_mid_step_status = server.status(followed)["status"], message.data["step"]
            if message.event:
                seen.append(message)
        # The generator returned: the response ended by itself after the final event.
    names = [m.event for m in seen]
    assert names[-1] == "done", names
    assert names.count("done") == 1 and set(names) <= {"queued", "progress", "preview", "done"}, names
    assert seen[-1].id == "done"
    assert seen[-1].data == {"task_id": followed, "image_url": f"/api/image?task_id={followed}"}
    progress = [m for m in seen if m.event == "progress"]
    steps = [m.data["step"] for m in progress]
    # Only changes, only forward; sampled, so not every step is seen, and the last one may be missed.
    assert steps == sorted(set(steps)) and steps[0] >= 0 and steps[-1] <= 8, steps
    assert any(0 < step < 8 for step in steps), steps  # 8 steps of ~0.2 s, sampled 4 times a second
    assert first_mid_step_status is not None and first_mid_step_status[0] == "running", first_mid_step_status
    assert all(m.data["steps"] == 8 and m.id == f"progress-{m.data['step']}" for m in progress)
    assert all(m.data["wait_remaining"] >= 0 for m in progress)
    previews = [m for m in seen if m.event == "preview"]
    assert previews, names
    assert previews[0].data["url"].startswith(f"/api/preview?task_id={followed}&n=")
    image = server.get(seen[-1].data["image_url"])
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (512, 512)


def test_a_finished_task_gets_its_final_event_and_a_reconnect_after_it_gets_204(server):
    task_id = server.generate(prompt="quick", width=256, height=256, steps=2)
    server.wait_status(task_id)
    with open_stream(server.url, task_id) as response:
        events = [m for m in read_events(response) if m.event]
    assert [(m.event, m.id) for m in events] == [("done", "done")]
    # Browsers reconnect whenever a stream ends; the id they send back says they have seen the end.
    again = requests.get(server.url + "/api/events", params={"task_id": task_id}, headers={"Last-Event-ID": "done"})
    assert again.status_code == 204
    # Any other id: the current state again (reconnect-safe), which here is the final event.
    again = open_stream(server.url, task_id, headers={"Last-Event-ID": "progress-1"})
    assert [m.event for m in read_events(again) if m.event] == ["done"]


def test_cancelling_ends_the_stream_and_idle_streams_get_keepalives(server):
    server.generate(**BLOCKER)
    waiting = server.generate(**FOLLOWED)
    with open_stream(server.url, waiting) as response:
        messages = read_events(response)
        wait_for(lambda: "keepalive" in next(messages).comments, 10, interval=0, what="a keepalive comment")
        server.get("/api/cancel", params={"task_id": waiting})
        rest = [m for m in messages if m.event]
    assert [(m.event, m.id, m.data) for m in rest][-1] == ("cancelled", "cancelled", {"task_id": waiting})


def test_a_failed_task_reports_its_error(server):
    task_id = server.generate(prompt="[demo-fault:raise]", width=256, height=256, steps=2)
    with open_stream(server.url, task_id) as response:
        final = [m for m in read_events(response) if m.event][-1]
    assert final.event == "failed" and final.id == "failed"
    assert "demo fault injected" in final.data["error"]


def test_unknown_task_is_a_json_404(server):
    response = server.get("/api/events", params={"task_id": "0123456789abcdef"})
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert "0123456789abcdef" in response.json()["message"]


def test_streams_beyond_the_cap_are_refused_and_polling_still_answers(server):
    server.generate(**BLOCKER)
    waiting = [server.generate(**FOLLOWED) for _ in range(2)]
    # --threads 6: 2 slots. (A stream that just ended frees its slot a moment after its client saw the end.)
    streams = [
        wait_for(lambda t=task_id: (r := open_stream(server.url, t)).status_code == 200 and r, 5, what="a slot")
        for task_id in waiting
    ]
    try:
        refused = server.get("/api/events", params={"task_id": waiting[0]})
        assert refused.status_code == 503
        assert "poll /api/status" in refused.json()["message"]
        assert refused.headers["Retry-After"] == "5"
        started = time.monotonic()
        assert server.status(waiting[0])["status"] == "waiting"  # the short requests still have threads
        assert time.monotonic() - started < 1.0
    finally:
        streams[0].close()
    # The server notices the hang-up within a second or so, and the slot is free again.
    reopened = wait_for(
        lambda: (r := open_stream(server.url, waiting[0])).status_code == 200 and r, 10, interval=0.1, what="a slot"
    )
    reopened.close()
    streams[1].close()


def test_preview_of_a_running_task(server):
    task_id = server.generate(prompt="previewed", width=1024, height=1024, steps=6)
    preview = wait_for(
        lambda: (r := server.get("/api/preview", params={"task_id": task_id})).status_code == 200 and r,
        20,
        interval=0.1,
        what="a preview",
    )
    assert preview.headers["Content-Type"] == "image/jpeg"
    assert preview.headers["Cache-Control"] == "no-store"
    image = Image.open(io.BytesIO(preview.content))
    assert image.format == "JPEG" and max(image.size) <= 256


def test_preview_404s_are_json_and_say_why(server):
    unknown = server.get("/api/preview", params={"task_id": "0123456789abcdef"})
    assert unknown.status_code == 404 and "0123456789abcdef" in unknown.json()["message"]
    server.generate(**BLOCKER)
    waiting = server.generate(**FOLLOWED)
    response = server.get("/api/preview", params={"task_id": waiting})
    assert response.status_code == 404
    assert "has no preview" in response.json()["message"]


def test_without_previews_there_are_no_preview_events(server_factory):
    server = server_factory("--no-previews", demo_speed=5)
    task_id = server.generate(prompt="no previews", width=512, height=512, steps=8)
    with open_stream(server.url, task_id) as response:
        names = [m.event for m in read_events(response) if m.event]
    assert names[-1] == "done" and "preview" not in names
    response = server.get("/api/preview", params={"task_id": task_id})
    assert response.status_code == 404 and "--no-previews" in response.json()["message"]


def test_the_stream_says_which_model_a_task_waits_to_load(server):
    """A task on a model that is not loaded: its events name the model, and say while it is being loaded
    (demo-slow loads for ~1.2 s at this speed, then steps for ~0.5 s each; the stream samples 4 times a second)."""
    task = server.generate(prompt="on another model", width=512, height=512, steps=3, model="demo-slow")
    with open_stream(server.url, task) as response:
        seen = [m for m in read_events(response) if m.event]
    progress = [m for m in seen if m.event in ("queued", "progress")]
    assert progress and all(m.data["model"] == "demo-slow" for m in progress), seen
    loading = [m for m in progress if m.data["loading_model"] == "demo-slow"]
    assert loading, progress  # told while it loads ...
    after = progress[progress.index(loading[-1]) + 1 :]
    assert after and all(m.data["loading_model"] is None for m in after), progress  # ... and once it has loaded
    assert seen[-1].event == "done"
