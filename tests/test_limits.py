"""Limits and fairness against the real server: caps on waiting tasks overall and per client, answered with
429, a JSON message and Retry-After, while other clients keep being served. A client is its remote address
(or its API key and address, see api/auth.py); the tests speak from 127.0.0.1, .2 and .3."""

from __future__ import annotations

import socket
import threading

import pytest
import requests
from requests.adapters import HTTPAdapter

BIG = {"width": 2048, "height": 2048, "steps": 100}  # ~30 s on the engine at demo speed 50: stays running


class SourceAddressAdapter(HTTPAdapter):
    """Connect from a given local address, so the server sees another client."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    probe = socket.socket()
    try:
        probe.bind((address, 0))  # Linux routes all of 127/8 to loopback; macOS only 127.0.0.1 unless aliased
    except OSError:
        pytest.skip(f"cannot send from {address} on this machine")
    finally:
        probe.close()
    session = requests.Session()
    session.mount("http://", SourceAddressAdapter(address))
    return session


def submit(session: requests.Session, url: str, prompt: str = "a test pattern", **params) -> requests.Response:
    body = {"prompt": prompt, "width": 256, "height": 256, "steps": 2, **params}
    return session.post(url + "/api/generate", json=body, timeout=30)


def assert_refused(response: requests.Response, words: str) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == 429 and body["status"] == "Too Many Requests"
    assert words in body["message"]
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1


def test_caps_per_client_and_overall_answer_429_with_retry_after_and_spare_other_clients(server_factory):
    server = server_factory("--max-waiting", "3", "--max-waiting-per-client", "2")
    a, b, c = client_at("127.0.0.1"), client_at("127.0.0.2"), client_at("127.0.0.3")
    blocker = submit(a, server.url, **BIG).json()["task_id"]
    server.wait_status(blocker, "running")  # running tasks do not count: only waiting ones

    first, second = (submit(a, server.url).json()["task_id"] for _ in range(2))
    assert_refused(submit(a, server.url), "You have 2 tasks waiting")
    assert_refused(submit(a, server.url, priority=True), "You have 2 tasks waiting")  # priority obeys the caps

    from_b = submit(b, server.url)
    assert from_b.status_code == 200, from_b.text  # another client is still served
    assert_refused(submit(c, server.url), "The queue is full (3 waiting tasks)")

    # Refused submissions left nothing behind, and every client can still read and cancel.
    listed = c.get(server.url + "/api/tasks", timeout=30)
    assert listed.status_code == 200 and listed.headers["X-Total-Count"] == "4"
    assert b.get(server.url + "/api/status", params={"task_id": from_b.json()["task_id"]}, timeout=30).ok
    assert c.get(server.url + "/api/health", timeout=30).status_code == 200

    # A cancelled task frees its client's place, and the queue's.
    assert a.get(server.url + "/api/cancel", params={"task_id": first}, timeout=30).json()["cancelled"]
    assert submit(c, server.url).status_code == 200
    assert_refused(submit(a, server.url), "The queue is full (3 waiting tasks)")
    assert a.get(server.url + "/api/cancel", params={"task_id": second}, timeout=30).ok
    assert submit(a, server.url).status_code == 200

    server.get("/api/clear")
    refusals = [line for line in server.lines if "refused a task from" in line]
    assert len(refusals) == 4 and all("127.0.0." in line for line in refusals)


def test_cors_exposes_retry_after_to_browsers(server_factory):
    server = server_factory("--max-waiting", "1")
    blocker = server.generate("a long one", **BIG)
    server.wait_status(blocker, "running")
    server.generate()
    refused = server.post(
        "/api/generate",
        json={"prompt": "x", "width": 256, "height": 256},
        headers={"Origin": "http://example.test"},
    )
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]
    server.get("/api/clear")


def burst(sessions: list[requests.Session], url: str) -> list[int]:
    """Every session submits at the same moment; the status codes."""

    gate, codes = threading.Barrier(len(sessions), timeout=30), []

    def one(session: requests.Session) -> None:
        gate.wait()
        codes.append(submit(session, url).status_code)

    threads = [threading.Thread(target=one, args=(session,)) for session in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def test_simultaneous_submissions_never_pass_the_caps(server_factory):
    """Issue 14, item 8: 32 submissions at once got 19 past caps of 5 per client and 12 overall; the check and
    the insert are one transaction now, so a burst fills the room exactly."""
    server = server_factory("--max-waiting", "12", "--max-waiting-per-client", "5")
    blocker = submit(client_at("127.0.0.1"), server.url, **BIG).json()["task_id"]
    server.wait_status(blocker, "running")

    one_client = [client_at("127.0.0.2") for _ in range(32)]
    codes = burst(one_client, server.url)
    assert sorted(set(codes)) == [200, 429] and codes.count(200) == 5

    many_clients = [client_at(f"127.0.0.{10 + i}") for i in range(32)]
    codes = burst(many_clients, server.url)
    assert codes.count(200) == 12 - 5 and codes.count(429) == 32 - 7
    assert server.get("/api/health").json()["waiting"] == 12
