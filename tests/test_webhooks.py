"""Webhooks (README: Webhooks): signed calls when tasks end, retried durably across restarts, never in the queue's
way, and only to public addresses unless allowed.

Unit tests of the address rule (many spellings), the URL rule, the signature and the retry schedule; egress tests
against receivers on loopback (pinned HTTPS, redirects, a trickling receiver); in-process tests of the outbox
and of every refusal on the three APIs; and end-to-end tests against the real server process, which runs with
--allow-private-webhooks, since the test receivers are on loopback.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import re
import socket
import sqlite3
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests

from core import rules
from core.submissions import GenerationRequest
from harness.server_process import wait_for
from taskqueue import egress
from taskqueue.webhooks import WebhookSender, WebhookSettings, retry_delay, signature
from tests.support.webhook_receiver import Call, webhook_receiver

README = Path(__file__).resolve().parents[1] / "README.md"
SECRET = "correct horse battery staple"


def readme_verify():
    """The verification snippet of the README's Webhooks section, run as a user would paste it."""
    section = README.read_text(encoding="utf-8").split("## Webhooks", 1)[1].split("\n## ", 1)[0]
    code = next(block for block in re.findall(r"```python\n(.*?)```", section, flags=re.S) if "def verify" in block)
    namespace: dict = {}
    exec(code, namespace)
    return namespace["verify"]


def verified(call: Call, secret: str = SECRET) -> bool:
    class Headers(dict):  # what frameworks give: case-insensitive names
        def get(self, name, default=None):
            return call.header(name) or default

    return readme_verify()(secret, Headers(), call.body)


# -- the address rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.255", "shared (CGNAT)"),
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private (unique local)"),
        ("fd00:ec2::254", "private (unique local)"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
        ("2002:7f00:1::", "6to4"),
        ("::127.0.0.1", "IPv4-compatible (deprecated)"),
        ("2001:db8::1", "documentation"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("fec0::1", "site-local"),
    ],
)
def test_non_public_addresses_are_named(address, kind):
    assert egress.forbidden_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert egress.forbidden_kind(ipaddress.ip_address(address)) is None


# Every spelling the system's resolver reads as a non-public address: the text of a host is never judged, what it
# resolves to is. None of these needs a DNS server (literals, and /etc/hosts' localhost).
SPELLINGS = [
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.1", "0x7f.0.0.1", "0177.0.0.1",
    "017700000001", "localhost", "0", "0.0.0.0", "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]", "169.254.169.254", "2852039166", "0xa9.0xfe.0xa9.0xfe", "169.16689662", "10.1", "167772161",
    "192.168.1.1", "172.16.0.1", "100.64.0.1", "[fe80::1]", "[fd00::1]", "224.0.0.1", "[64:ff9b::7f00:1]",
    "[::ffff:a9fe:a9fe]",
]  # fmt: skip


@pytest.mark.parametrize("host", SPELLINGS)
def test_every_spelling_of_a_non_public_address_is_refused(host):
    problem = egress.Policy().problem(f"http://{host}:8080/hook")
    assert problem is not None and "public addresses only" in problem and "--allow-private-webhooks" in problem


@pytest.mark.parametrize("host", ["8.8.8.8", "134744072", "[2606:4700::1111]", "[::ffff:8.8.8.8]"])
def test_public_literals_are_accepted_without_a_dns_server(host):
    assert egress.Policy().problem(f"https://{host}/hook") is None


def test_one_non_public_answer_refuses_the_whole_name():
    mixed = egress.Policy(resolver=lambda host, port: ["93.184.215.14", "169.254.169.254"])
    assert "link-local" in mixed.problem("https://hooks.example.com/")
    public = egress.Policy(resolver=lambda host, port: ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    assert public.problem("https://hooks.example.com/") is None
    assert public.addresses(egress.target("https://hooks.example.com/")) == [
        "93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]  # fmt: skip


def test_a_name_that_does_not_resolve_is_refused():
    def nowhere(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    assert "does not resolve" in egress.Policy(resolver=nowhere).problem("https://nowhere.invalid/")


def test_allow_private_lifts_the_address_rule():
    policy = egress.Policy(allow_private=True)
    for host in ("127.0.0.1", "[::1]", "169.254.169.254", "10.0.0.1", "localhost"):
        assert policy.problem(f"http://{host}/hook") is None, host


def test_zone_ids_are_not_part_of_the_address():
    policy = egress.Policy(resolver=lambda host, port: ["fe80::1%eth0"])
    assert "link-local" in policy.problem("http://router.local/")


# -- the URL rule (core/rules.py) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "example.com/hook",
        "//example.com/hook",
        "http://",
        "https://",
        "http:///hook",
        "http://:8080/hook",
        "https://user:password@example.com/hook",
        "https://user@example.com/hook",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://example.com:port/",
        "http://[::1/",
        "http://exa mple.com/",
        "http://example.com/\r\nX-Injected: 1",
        "http://example.com\\@127.0.0.1/",
        "http://exämple.com/",
        "",
        "https://example.com/" + "a" * rules.MAX_CALLBACK_URL_CHARS,
    ],
)
def test_urls_refused_by_their_text(url):
    assert rules.callback_url_problem(url) is not None
    problems = rules.request_problems(GenerationRequest(prompt="x", callback_url=url), rules.Limits())
    assert list(problems) == ["callback_url"]


@pytest.mark.parametrize(
    "url",
    ["https://example.com/hook", "http://example.com:8080/a/b?token=x&y=1", "HTTPS://Example.COM/", "http://[::1]:80/"],
)
def test_urls_accepted_by_their_text(url):
    assert rules.callback_url_problem(url) is None


# -- signature and retries ---------------------------------------------------------------------------------


def test_the_readme_verifier_accepts_our_signature_and_nothing_else():
    verify = readme_verify()
    body = b'{"event":"task.done","task_id":"0123456789abcdef"}'
    now = int(time.time())
    good = {"X-Mflux-Timestamp": str(now), "X-Mflux-Signature": signature(SECRET, now, body)}
    assert good["X-Mflux-Signature"].startswith("sha256=") and len(good["X-Mflux-Signature"]) == 7 + 64
    assert verify(SECRET, good, body)
    assert not verify("another secret", good, body)
    assert not verify(SECRET, good, body.replace(b"done", b"fail"))
    assert not verify(SECRET, {**good, "X-Mflux-Timestamp": str(now + 1)}, body)  # the timestamp is signed
    old = now - 3600
    replayed = {"X-Mflux-Timestamp": str(old), "X-Mflux-Signature": signature(SECRET, old, body)}
    assert not verify(SECRET, replayed, body)
    assert not verify(SECRET, {"X-Mflux-Timestamp": str(now)}, body)
    assert not verify(SECRET, {}, body)


def test_retry_delays_double_up_to_the_cap_and_vary_by_a_fifth():
    settings = WebhookSettings(first_retry_seconds=10, max_retry_seconds=3600)
    middle = [retry_delay(attempt, settings, draw=lambda: 0.5) for attempt in range(1, 13)]
    assert middle == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
    assert retry_delay(1, settings, draw=lambda: 0.0) == pytest.approx(8)
    assert retry_delay(1, settings, draw=lambda: 1.0) == pytest.approx(12)
    assert retry_delay(10_000, settings, draw=lambda: 0.5) == 3600
    slow = WebhookSettings(first_retry_seconds=7200, max_retry_seconds=3600)  # a first delay beyond the cap
    assert retry_delay(3, slow, draw=lambda: 0.5) == 7200


# -- egress: pinned connections, no redirects, bounded time -----------------------------------------------


def _post(url: str, policy: egress.Policy, timeout: float = 5.0, tls: ssl.SSLContext | None = None):
    call = egress.target(url)
    headers = {"Content-Type": "application/json"}
    return egress.post(call, policy.addresses(call), b"{}", headers, connect_timeout=2, timeout=timeout, tls=tls)


def _certificates(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `name` signed by it: (CA, certificate, key) files."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, extensions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Test CA", ca_key, "Test CA", ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    server = certificate(name, server_key, "Test CA", ca_key, [
        (x509.SubjectAlternativeName([x509.DNSName(name)]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ])  # fmt: skip
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_https_goes_to_the_vetted_address_and_speaks_to_the_name(tmp_path):
    ca, cert, key = _certificates(tmp_path, "hooks.example.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(ca))
    with webhook_receiver(tls=server_tls, host_name="hooks.example.test") as receiver:
        pinned = egress.Policy(allow_private=True, resolver=lambda host, port: ["127.0.0.1"])
        answer = _post(receiver.url + "/hook?token=t", pinned, tls=client_tls)
        assert answer.status == 200
        (call,) = receiver.calls
        port = receiver.url.rsplit(":", 1)[1]
        assert call.header("Host") == f"hooks.example.test:{port}"
        assert call.sni == "hooks.example.test"
        assert call.path == "/hook?token=t"
        # The same address under a name the certificate does not cover: the certificate is checked against the
        # URL's name, not the address connected to.
        with pytest.raises(OSError, match="certificate"):
            _post(f"https://other.example.test:{port}/hook", pinned, tls=client_tls)
        assert len(receiver.calls) == 1


def test_redirects_are_not_followed():
    with webhook_receiver() as receiver:
        receiver.answers = [302]
        answer = _post(receiver.url + "/hook", egress.Policy(allow_private=True))
        assert answer.status == 302 and answer.headers["location"].endswith("/redirected")
        assert [call.path for call in receiver.calls] == ["/hook"]


def test_proxy_variables_are_ignored(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: a proxy there would be no answer
    with webhook_receiver() as receiver:
        assert _post(receiver.url + "/hook", egress.Policy(allow_private=True)).status == 200
        assert len(receiver.calls) == 1


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_timeout():
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.is_set():  # one header byte at a time, each well within any per-read timeout
                try:
                    connection.sendall(b"X")
                except OSError:
                    return
                stop.wait(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"did not answer within 0\.5 s"):
            _post(f"http://127.0.0.1:{listener.getsockname()[1]}/", egress.Policy(allow_private=True), timeout=0.5)
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_an_address_that_refuses_is_skipped_for_the_next():
    with webhook_receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1])
        closed = socket.create_server(("127.0.0.2", 0))  # bound, never listening for us: refused
        closed_port = closed.getsockname()[1]
        closed.close()
        call = egress.target(f"http://hooks.test:{port}/hook")
        answer = egress.post(call, ["127.0.0.2", "127.0.0.1"], b"{}", {}, connect_timeout=2, timeout=5)
        assert answer.status == 200 and closed_port != port
        with pytest.raises(egress.Unreachable):
            egress.post(egress.target(f"http://hooks.test:{closed_port}/"), ["127.0.0.1"], b"{}", {},
                        connect_timeout=2, timeout=5)  # fmt: skip


# -- in process: the outbox, and the refusals of every API -------------------------------------------------


def test_an_ended_task_has_its_call_in_the_outbox_at_once(service, parts):
    hook = "https://8.8.8.8/hook"  # public, so accepted; the senders are not started here, nothing is sent
    cancelled = service.submit(GenerationRequest(prompt="a", width=256, height=256, callback_url=hook)).task
    failed = service.submit(GenerationRequest(prompt="b", width=256, height=256, callback_url=hook)).task
    plain = service.submit(GenerationRequest(prompt="c", width=256, height=256)).task
    assert parts.store.webhook_calls(10) == []  # nothing has ended yet
    service.cancel(cancelled.id)
    service.cancel(cancelled.id)  # cancelling an ended task again is no new end
    service.cancel(plain.id)
    assert parts.store.claim(failed.id) is not None
    assert parts.store.mark_failed(failed.id, time.time(), "render failed: out of memory")
    calls = {call.task_id: call for call in parts.store.webhook_calls(10)}
    assert set(calls) == {cancelled.id, failed.id}
    assert calls[cancelled.id].status.value == "cancelled" and calls[cancelled.id].error is None
    assert calls[failed.id].status.value == "failed" and calls[failed.id].error == "render failed: out of memory"
    assert {call.url for call in calls.values()} == {hook}
    assert (calls[failed.id].width, calls[failed.id].height, calls[failed.id].seed) == (256, 256, failed.params.seed)
    assert calls[failed.id].attempts == 0 and calls[failed.id].due_at == calls[failed.id].ended_at
    assert len({call.id for call in calls.values()}) == 2
    # The call outlives its task: retention may forget the task while the call is still being retried.
    parts.store.expire(time.time() + 1)
    assert parts.store.get(failed.id) is None and len(parts.store.webhook_calls(10)) == 2


REFUSED = [
    "ftp://example.com/hook",
    "http:///hook",
    "https://user:pw@example.com/",
    "https://example.com/" + "a" * rules.MAX_CALLBACK_URL_CHARS,
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://10.0.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://0.0.0.0/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_on_our_api(client, url):
    response = client.post("/api/generate", json={"prompt": "x", "callback_url": url})
    assert response.status_code == 422
    body = response.get_json()
    assert list(body["errors"]["json"]) == ["callback_url"] and body["message"].startswith("callback_url: ")


@pytest.mark.parametrize("url", REFUSED)
def test_refused_on_the_openai_api(client, url):
    response = client.post("/v1/images/generations", json={"prompt": "x", "callback_url": url})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["param"] == "callback_url" and error["message"].startswith("callback_url: ")


@pytest.mark.parametrize("url", REFUSED)
def test_refused_on_the_a1111_api(client, url):
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "callback_url": url})
    assert response.status_code == 422
    assert response.get_json()["detail"].startswith("callback_url: ")


def test_a_non_string_callback_url_is_refused(client):
    response = client.post("/api/generate", json={"prompt": "x", "callback_url": 42})
    assert response.status_code == 422 and "callback_url" in response.get_json()["errors"]["json"]


def test_the_document_describes_callback_url(client):
    document = client.get("/openapi.json").get_json()
    for schema in ("GenerateRequest", "ImageGeneration", "Txt2Img"):
        prop = document["components"]["schemas"][schema]["properties"]["callback_url"]
        assert prop["type"] == "string" and prop["maxLength"] == rules.MAX_CALLBACK_URL_CHARS, schema


# -- end to end: the real server ----------------------------------------------------------------------------

FAST_RETRIES = ("--allow-private-webhooks", "--webhook-secret", SECRET, "--webhook-retry-seconds", "0.3")


def _generate(server, prompt: str, receiver, **params) -> str:
    return server.generate(prompt, callback_url=receiver.url + "/hook?token=abc", **params)


def _assert_signed_call(call: Call, task_id: str, status: str) -> dict:
    assert verified(call), call.headers
    body = call.json
    assert body["task_id"] == task_id and body["status"] == status and body["event"] == f"task.{status}"
    assert call.header("X-Mflux-Event") == f"task.{status}"
    assert call.header("X-Mflux-Delivery") == body["delivery_id"] and re.fullmatch(r"[0-9a-f]{32}", body["delivery_id"])
    assert call.header("Content-Type") == "application/json" and call.path == "/hook?token=abc"
    assert body["submitted_at"] <= body["ended_at"] <= time.time()
    return body


def test_done_failed_and_cancelled_tasks_each_get_a_signed_call(server_factory):
    server = server_factory(*FAST_RETRIES, demo_speed=50)
    with webhook_receiver() as receiver:
        done = _generate(server, "a lighthouse", receiver, seed=7)
        failed = _generate(server, "a lighthouse [demo-fault:raise]", receiver)
        calls = receiver.wait_calls(2)
        # Long enough to be cancelled while it waits or runs.
        cancelled = _generate(server, "a slow one", receiver, width=1024, height=1024, steps=100)
        server.get("/api/cancel", params={"task_id": cancelled})
        calls = {call.json["task_id"]: call for call in receiver.wait_calls(3)}
        assert set(calls) == {done, failed, cancelled}

        body = _assert_signed_call(calls[done], done, "done")
        assert (body["seed"], body["width"], body["height"], body["steps"], body["error"]) == (7, 256, 256, 2, None)
        assert body["model"] == "demo" and body["started_at"] is not None
        assert body["image_url"] == f"{server.url}/api/image?task_id={done}&delete=false"
        image = requests.get(body["image_url"], timeout=10)
        assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"

        body = _assert_signed_call(calls[failed], failed, "failed")
        assert "demo fault injected" in body["error"] and body["image_url"] is None

        body = _assert_signed_call(calls[cancelled], cancelled, "cancelled")
        assert body["image_url"] is None and body["error"] is None
        assert len(receiver.calls) == 3 and all(call.header("X-Mflux-Attempt") == "1" for call in receiver.calls)

        # The flag lifts the address rule, never the scheme rule.
        refused = server.post("/api/generate", json={"prompt": "x", "callback_url": "ftp://127.0.0.1/"})
        assert refused.status_code == 422 and "callback_url" in refused.json()["errors"]["json"]


def test_openai_and_a1111_calls_take_a_callback(server_factory):
    server = server_factory(*FAST_RETRIES, demo_speed=50)
    with webhook_receiver() as receiver:
        hook = receiver.url + "/hook?token=abc"
        body = {"prompt": "a lighthouse", "size": "256x256", "n": 2, "response_format": "url", "callback_url": hook}
        openai = server.post("/v1/images/generations", json=body)
        assert openai.status_code == 200, openai.text
        a1111 = server.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "width": 256, "height": 256,
                                                       "steps": 2, "callback_url": hook})  # fmt: skip
        assert a1111.status_code == 200, a1111.text
        calls = receiver.wait_calls(3)
        assert all(verified(call) and call.json["status"] == "done" for call in calls)
        assert len({call.json["task_id"] for call in calls}) == 3
        for url in ("/v1/images/generations", "/sdapi/v1/txt2img"):
            refused = server.post(url, json={"prompt": "x", "callback_url": "gopher://127.0.0.1/"})
            assert refused.status_code in (400, 422) and "callback_url" in refused.text


def test_a_failing_receiver_gets_retries_with_growing_delays_until_it_answers(server_factory):
    server = server_factory(*FAST_RETRIES, demo_speed=50)
    with webhook_receiver() as receiver:
        receiver.answers = [500, 503, 404]
        task_id = _generate(server, "a lighthouse", receiver)
        calls = receiver.wait_calls(4)
        receiver.wait_answered(200)
        server.wait_for_log("webhook delivered")
        assert len(receiver.calls) == 4
        assert all(verified(call) for call in calls)
        assert {call.json["task_id"] for call in calls} == {task_id}
        assert len({call.header("X-Mflux-Delivery") for call in calls}) == 1  # one call, four attempts
        assert [call.header("X-Mflux-Attempt") for call in calls] == ["1", "2", "3", "4"]
        assert len({call.body for call in calls}) == 1  # the same body; only the timestamp is per attempt
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
        # 0.3 s, doubling, each at least 80% of its step (delays only ever add to them)
        assert [gap >= 0.8 * 0.3 * 2**index for index, gap in enumerate(gaps)] == [True, True, True], gaps


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_restart_in_the_middle_of_retries_still_delivers(server_factory, how):
    server = server_factory(*FAST_RETRIES, demo_speed=50)
    with webhook_receiver() as receiver:
        receiver.default = 500
        task_id = _generate(server, "a lighthouse", receiver)
        before = receiver.wait_calls(2)
        server.stop() if how == "stop" else server.kill()
        receiver.default = 200
        server = server_factory(*FAST_RETRIES, data_dir=server.data_dir, demo_speed=50)
        receiver.wait_answered(200)
        after = receiver.calls[len(before) :]
        assert all(verified(call) for call in receiver.calls)
        assert {call.json["task_id"] for call in receiver.calls} == {task_id}
        assert {call.header("X-Mflux-Delivery") for call in receiver.calls} == {before[0].header("X-Mflux-Delivery")}
        # Attempts go on from those recorded (a kill may cut the record of the last one short: it is made again).
        assert int(after[-1].header("X-Mflux-Attempt")) >= 2
        # The new server's links: its own address.
        assert after[-1].json["image_url"].startswith(server.url + "/api/image?")


def test_a_slow_receiver_never_delays_the_next_task(server_factory):
    server = server_factory(*FAST_RETRIES, "--webhook-timeout", "60", demo_speed=50)
    with webhook_receiver() as receiver:
        receiver.hold = threading.Event()
        slow = [_generate(server, f"slow receiver {index}", receiver) for index in range(5)]  # more than in flight
        receiver.wait_calls(4)  # every sender is held
        started = time.monotonic()
        nxt = server.generate("the next task")
        server.wait_status(nxt, "done", timeout=30)
        assert time.monotonic() - started < 10
        assert len(receiver.answered) == 0  # all still held
        assert len(receiver.calls) == 4  # at most 4 calls under way: the fifth waits for a free sender
        receiver.hold.set()
        calls = receiver.wait_calls(5)
        assert {call.json["task_id"] for call in calls} == set(slow)


def test_a_receiver_that_does_not_answer_in_time_is_retried(server_factory):
    server = server_factory(*FAST_RETRIES, "--webhook-timeout", "0.5", demo_speed=50)
    with webhook_receiver() as receiver:
        receiver.hold, receiver.hold_seconds = threading.Event(), 5.0
        task_id = _generate(server, "a lighthouse", receiver)
        calls = receiver.wait_calls(2, timeout=15)  # the first attempt timed out while still held
        assert [call.header("X-Mflux-Attempt") for call in calls[:2]] == ["1", "2"]
        assert calls[1].at - calls[0].at < 4 and {call.json["task_id"] for call in calls} == {task_id}
        server.wait_for_log(r"webhook attempt 1 failed: .*timed out|webhook attempt 1 failed")
        receiver.hold.set()


def _outbox(server) -> int:
    """Calls still in the server's outbox, read from its database as any SQLite reader may (WAL)."""
    with sqlite3.connect(f"file:{server.data_dir / 'tasks.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()[0]


def test_delivered_and_given_up_calls_leave_the_outbox(server_factory):
    # Retried for about a second only: then given up.
    server = server_factory(*FAST_RETRIES, "--webhook-retry-hours", "0.0003", demo_speed=50)
    with webhook_receiver() as receiver:
        receiver.default = 500
        _generate(server, "given up", receiver)
        server.wait_for_log("webhook given up after")
        attempts = len(receiver.calls)
        assert attempts >= 2 and _outbox(server) == 0
        receiver.default = 410  # Gone: at once
        _generate(server, "gone", receiver)
        server.wait_for_log("answered 410 Gone")
        assert len(receiver.calls) == attempts + 1 and _outbox(server) == 0
        receiver.default = 200
        _generate(server, "delivered", receiver)
        server.wait_for_log(r"webhook delivered .*attempt 1, 200")
        assert len(receiver.calls) == attempts + 2 and _outbox(server) == 0


def test_without_the_flag_the_real_server_refuses_loopback(server_factory):
    server = server_factory(demo_speed=50)
    with webhook_receiver() as receiver:
        response = server.post("/api/generate", json={"prompt": "x", "callback_url": receiver.url + "/hook"})
        assert response.status_code == 422
        assert "loopback" in response.json()["errors"]["json"]["callback_url"][0]
        assert receiver.calls == []


def test_submissions_do_not_wake_the_webhook_senders_and_an_ended_task_does(service, parts):
    """Every change woke all four sender threads to ask the outbox (a query each), submissions included: under a
    stream of submissions that was work for nothing, taken from the requests (BENCHMARKS.md, benchmark 2)."""
    asked = []

    class CountingStore:
        def __getattr__(self, name):
            return getattr(parts.store, name)

        def webhook_calls(self, limit):
            asked.append(limit)
            return parts.store.webhook_calls(limit)

    sender = WebhookSender(CountingStore(), parts.changes, WebhookSettings())
    sender.start("http://127.0.0.1:1")
    try:
        wait_for(lambda: len(asked) >= 4, 10, interval=0.01, what="each sender's first look at the outbox")
        first_looks = len(asked)
        tasks = [service.submit(GenerationRequest(prompt=f"t{i}", width=64, height=64)).task for i in range(20)]
        with pytest.raises(TimeoutError):  # absence: allowed half a second to happen
            wait_for(lambda: len(asked) > first_looks, 0.5, interval=0.01, what="a sender woken by a submission")
        service.cancel(tasks[0].id)
        wait_for(lambda: len(asked) > first_looks, 10, interval=0.01, what="a sender woken by a task's end")
    finally:
        sender.stop()
