"""AUTOMATIC1111 per-client isolation on a server with an API key, against the real server.

One shared key identifies no one in particular: two chat programs configured with the same key, on two
machines, are still two clients (api/auth.py keeps the address in the identity). One's /sdapi/v1/progress must
not show the other's images, and its /sdapi/v1/interrupt and /skip must not stop them. The clients here speak
from 127.0.0.1 and 127.0.0.2 (Linux routes all of 127/8 to loopback).
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.server_process import RunningServer, wait_for
from tests.test_limits import client_at

KEY = "shared-key-of-two-chat-programs"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"webui:{KEY}".encode()).decode()}
SLOW = {"prompt": "a's long image", "width": 1024, "height": 1024, "steps": 100}  # ~50 s at demo speed 4


@pytest.fixture
def keyed(server_factory) -> RunningServer:
    server = server_factory(demo_speed=4, env={"MFLUX_SERVER_API_KEY": KEY}, start=False)
    server.start(wait_ready=False)  # the readiness probe has no key
    wait_for(lambda: server.get("/api/health", headers=AUTH).json().get("model_loaded"), 60, what="the engine")
    return server


def progress(session, server: RunningServer) -> dict:
    response = session.get(server.url + "/sdapi/v1/progress", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_same_key_other_address_neither_sees_nor_stops_the_others_images(keyed):
    a, b = client_at("127.0.0.1"), client_at("127.0.0.2")
    assert b.get(keyed.url + "/sdapi/v1/progress", timeout=10).status_code == 401  # the key is required at all
    with ThreadPoolExecutor(2) as pool:
        a_call = pool.submit(a.post, keyed.url + "/sdapi/v1/txt2img", json=SLOW, headers=AUTH, timeout=120)
        mine = wait_for(
            lambda: (p := progress(a, keyed))["state"]["sampling_step"] >= 1 and p, 30, what="a's image to run"
        )
        assert mine["state"]["job_count"] == 1 and mine["textinfo"].startswith("Generating: step")

        # b, with the same key, sees nothing of a's.
        theirs = progress(b, keyed)
        assert theirs["state"]["job_count"] == 0 and theirs["progress"] == 0.0
        assert theirs["current_image"] is None and theirs["textinfo"] is None

        # b queues its own image behind a's: each sees its own, and only its own.
        b_call = pool.submit(
            b.post, keyed.url + "/sdapi/v1/txt2img", timeout=120, headers=AUTH,
            json={"prompt": "b's image", "width": 64, "height": 64, "steps": 1},
        )  # fmt: skip
        waiting = wait_for(lambda: (p := progress(b, keyed))["state"]["job_count"] == 1 and p, 10, what="b's task")
        assert waiting["textinfo"].startswith("Waiting in the queue") and waiting["state"]["sampling_steps"] == 0
        assert progress(a, keyed)["state"]["job_count"] == 1

        # b's interrupt and skip stop b's image only; a's goes on running.
        step_before = progress(a, keyed)["state"]["sampling_step"]
        assert b.post(keyed.url + "/sdapi/v1/skip", headers=AUTH, timeout=10).json() is None  # A1111's null
        assert b.post(keyed.url + "/sdapi/v1/interrupt", headers=AUTH, timeout=10).json() == {}
        b_answer = b_call.result(timeout=30)
        assert b_answer.status_code == 200 and b_answer.json()["images"] == []  # interrupted while waiting
        assert not a_call.done()
        later = wait_for(
            lambda: (p := progress(a, keyed))["state"]["sampling_step"] > step_before and p, 30, what="a's next step"
        )
        assert later["state"]["job_count"] == 1
        statuses = {t["prompt"]: t["status"] for t in keyed.get("/api/tasks", headers=AUTH).json()}
        assert statuses == {"a's long image": "running", "b's image": "cancelled"}

        # a's own interrupt does stop it.
        assert a.post(keyed.url + "/sdapi/v1/interrupt", headers=AUTH, timeout=10).json() == {}
        a_answer = a_call.result(timeout=30)
    # Stopped while running: the image as it stood (its latest preview, at full size), as A1111 answers.
    assert a_answer.status_code == 200 and len(a_answer.json()["images"]) <= 1
    assert progress(a, keyed)["state"]["job_count"] == 0
