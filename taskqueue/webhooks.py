"""Webhooks: when a task with a `callback_url` ends, POST its outcome there, durably and never in the queue's way.

The call is written to the store's outbox in the transaction that ends the task (store.py, migration 3), so it
survives a crash or a restart: the outbox is all the state the senders here have. `max_in_flight` threads each
take the soonest due call, POST it (taskqueue/egress.py: vetted, pinned, bounded in time) and record how it
went. Delivered (2xx) and given-up calls (410 Gone, or failing for `retry_for_seconds`) leave the outbox; any
other answer, or none, is retried after a delay that doubles each time. No store lock is held during a call, and
neither the scheduler nor the worker ever waits for one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core import __version__
from core.tasks import TaskStatus
from taskqueue import egress
from taskqueue.changes import ChangeFeed
from taskqueue.store import TaskStore, WebhookCall

log = logging.getLogger("taskqueue.webhooks")

SIGNATURE_HEADER = "X-Mflux-Signature"
TIMESTAMP_HEADER = "X-Mflux-Timestamp"
DELIVERY_HEADER = "X-Mflux-Delivery"
EVENT_HEADER = "X-Mflux-Event"
ATTEMPT_HEADER = "X-Mflux-Attempt"
IDLE_SECONDS = 30.0  # a sender wakes on every task change anyway; this only bounds a missed wake-up
PAUSE_AFTER_ERROR_SECONDS = 5.0  # the store failed (disk full, unmounted): try again, without spinning


@dataclass(frozen=True)
class WebhookSettings:
    secret: str | None = None  # signs every call (X-Mflux-Signature); None: calls are not signed
    allow_private: bool = False  # let calls go to loopback, private and link-local addresses (a home network)
    timeout_seconds: float = 10.0  # one attempt, from connecting to the answer's headers
    connect_timeout_seconds: float = 5.0
    first_retry_seconds: float = 10.0  # the delay before the first retry; it doubles with each one
    max_retry_seconds: float = 3600.0  # … up to this
    retry_for_seconds: float = 24 * 3600.0  # a call still failing this long after its task ended is given up
    max_in_flight: int = 4  # calls made at once (one thread each)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, of `f"{timestamp}."` followed by
    the raw body. The timestamp is signed so that a recorded call cannot be replayed later: receivers refuse
    timestamps older than a few minutes."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def payload(call: WebhookCall, base_url: str) -> dict:
    """What a call reports: the task as it ended. Its delivery id is in the (signed) body too, so that a receiver
    can deduplicate on a value no one could have changed."""
    image_url = None
    if call.status is TaskStatus.DONE:
        image_url = f"{base_url}/api/image?task_id={call.task_id}&delete=false"
    return {
        "event": f"task.{call.status.value}",
        "delivery_id": call.id,
        "task_id": call.task_id,
        "status": call.status.value,
        "error": call.error,
        "image_url": image_url,
        "model": call.model,
        "seed": call.seed,
        "width": call.width,
        "height": call.height,
        "steps": call.steps,
        "submitted_at": call.submitted_at,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
    }


def retry_delay(attempts: int, settings: WebhookSettings, draw: Callable[[], float] = random.random) -> float:
    """Seconds before the next attempt after `attempts` failed ones: the first retry delay, doubled for each
    further failure up to the maximum, then varied ±20% so that calls that failed together spread out."""
    exponent = min(max(attempts - 1, 0), 64)  # beyond that the maximum has long been reached
    cap = max(settings.max_retry_seconds, settings.first_retry_seconds)
    base = min(settings.first_retry_seconds * 2.0**exponent, cap)
    return base * (0.8 + 0.4 * draw())


def retry_after(headers: Mapping[str, str]) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is ignored), or None."""
    value = headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


def default_base_url(host: str, port: int) -> str:
    """The server's address for links in calls when --public-url is not given: where it listens (a wildcard
    address is no address to give anyone: the machine's name instead)."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class WebhookSender:
    def __init__(
        self,
        store: TaskStore,
        changes: ChangeFeed,
        settings: WebhookSettings,
        policy: egress.Policy | None = None,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._changes = changes
        self._settings = settings
        self._policy = policy or egress.Policy(allow_private=settings.allow_private)
        self._tls = tls
        self._clock = clock
        self._base_url = ""
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()  # call ids taken by a sender thread
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def problem(self, url: str) -> str | None:
        """Why calls may not go to `url` (where it points, resolved now), or None."""
        return self._policy.problem(url)

    def start(self, base_url: str) -> None:
        """Start the sender threads; `base_url` is the server's own address, for the image links in calls."""
        self._base_url = base_url.rstrip("/")
        if pending := self._store.count_webhook_calls():
            log.info("%d webhook call(s) pending from before the restart: resuming them", pending)
        for index in range(self._settings.max_in_flight):
            thread = threading.Thread(target=self._run, name=f"webhooks-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop taking calls; wait a little for those under way (any cut short is made again after a restart)."""
        self._stopping.set()
        self._changes.changed()  # wakes the senders waiting for work (and any other waiter, who finds nothing new)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    # -- the sender threads ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                # Before looking: a call written meanwhile ends the wait at once. A call is written when a task
                # ends, never when one joins the queue: submissions do not wake the senders.
                version = self._changes.others_version
                call, wait = self._take()
                if call is None:
                    self._changes.wait(version, wait, others=True)
                    continue
                try:
                    self._attempt(call)
                finally:
                    with self._lock:
                        self._in_flight.discard(call.id)
            except Exception:
                log.exception("webhook sender failed; trying again in %g s", PAUSE_AFTER_ERROR_SECONDS)
                self._stopping.wait(PAUSE_AFTER_ERROR_SECONDS)

    def _take(self) -> tuple[WebhookCall | None, float]:
        """The soonest due call no other thread has (now taken), or None and how long to wait for one."""
        with self._lock:
            for call in self._store.webhook_calls(len(self._in_flight) + 1):
                if call.id in self._in_flight:
                    continue
                wait = call.due_at - self._clock()
                if wait > 0:
                    return None, min(wait, IDLE_SECONDS)
                self._in_flight.add(call.id)
                return call, 0.0
        return None, IDLE_SECONDS

    def _attempt(self, call: WebhookCall) -> None:
        attempt = call.attempts + 1
        body = json.dumps(payload(call, self._base_url), separators=(",", ":")).encode("utf-8")
        settings = self._settings
        try:
            target = egress.target(call.url)
            addresses = self._policy.addresses(target)  # again: DNS may answer otherwise than at submission
            answer = egress.post(
                target, addresses, body, self._headers(call, body, attempt),
                connect_timeout=settings.connect_timeout_seconds, timeout=settings.timeout_seconds, tls=self._tls,
            )  # fmt: skip
        except (egress.Refused, OSError) as error:
            self._failed(call, attempt, str(error) or type(error).__name__, None)
            return
        if 200 <= answer.status < 300:
            self._store.webhook_done(call.id)
            log.info(
                "task %s: webhook delivered to %s (attempt %d, %d)", call.task_id, target.origin, attempt,
                answer.status, extra={"task_id": call.task_id},
            )  # fmt: skip
        elif answer.status == 410:  # Gone: the receiver says it wants no more calls
            self._store.webhook_done(call.id)
            log.warning(
                "task %s: webhook given up: %s answered 410 Gone", call.task_id, target.origin,
                extra={"task_id": call.task_id},
            )  # fmt: skip
        else:  # 3xx too: redirects are not followed (they could lead anywhere)
            self._failed(call, attempt, f"{target.origin} answered {answer.status}", retry_after(answer.headers))

    def _headers(self, call: WebhookCall, body: bytes, attempt: int) -> dict[str, str]:
        timestamp = int(self._clock())  # per attempt, so that a retry hours later is not refused as a replay
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"mflux-server/{__version__}",
            EVENT_HEADER: f"task.{call.status.value}",
            DELIVERY_HEADER: call.id,
            ATTEMPT_HEADER: str(attempt),
            TIMESTAMP_HEADER: str(timestamp),
        }
        if self._settings.secret:
            headers[SIGNATURE_HEADER] = signature(self._settings.secret, timestamp, body)
        return headers

    def _failed(self, call: WebhookCall, attempt: int, reason: str, wanted_delay: float | None) -> None:
        settings = self._settings
        delay = retry_delay(attempt, settings)
        if wanted_delay is not None:  # the receiver's Retry-After, within our own bound
            delay = max(delay, min(wanted_delay, settings.max_retry_seconds))
        now = self._clock()
        extra = {"task_id": call.task_id}
        if now + delay > call.ended_at + settings.retry_for_seconds:
            self._store.webhook_done(call.id)
            log.warning("task %s: webhook given up after %d attempts: %s", call.task_id, attempt, reason, extra=extra)
            return
        self._store.webhook_retry(call.id, now + delay, reason)
        log.warning(
            "task %s: webhook attempt %d failed: %s; next in %.1f s", call.task_id, attempt, reason, delay, extra=extra
        )
