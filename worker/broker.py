"""The Redis layout shared by the server and workers on other machines (`mflux-server-worker`).

- Worker → server: one **stream**, `mflux:events`, read by the server through a consumer group and acknowledged
  once handled: a message written while the server is down (a finished image) waits for it, and one the server
  was handling when it died is delivered again. Trimmed to the newest `EVENTS_MAXLEN`.
- Server → worker: a **list** per worker, its inbox (`BLPOP`): one reader, in order. A message a worker takes and
  then dies with is not lost track of: the worker's loss is noticed (no heartbeat) and its task runs again.
- Liveness: each worker keeps `…:owner` (its session id) alive with a TTL; a worker whose key lapses is lost. Two
  workers cannot hold one name: the key is taken with SET NX.
- Bulk data travels as keys with an expiry, never inside messages: a task's input images (`mflux:inputs:<id>`),
  a finished image (`mflux:image:<id>:<session>`: the session, so that a lost worker's late image cannot be
  taken for a re-run's), the running task's progress and preview (`…:live`, `…:preview`). Memory stays bounded
  whatever happens: every such key expires, and a worker makes at most one image at a time.

Everything is JSON (worker/wire.py), never pickle: Redis must not be able to make a process run code.
"""

from __future__ import annotations

PROTOCOL = 1  # bumped when a message or key changes: workers of another protocol are refused, saying so
EVENTS = "mflux:events"
GROUP = "mflux-server"
WORKERS = "mflux:workers"  # every name that registered, for /api/workers after a restart
EVENTS_MAXLEN = 20_000
HEARTBEAT_SECONDS = 1.0
LOST_AFTER_SECONDS = 5.0  # a worker whose heartbeat is this old is lost (the owner key's TTL)
LIVE_SECONDS = 0.25  # how often a busy worker publishes its progress
IMAGE_TTL_SECONDS = 3600
INPUTS_TTL_SECONDS = 24 * 3600
PREVIEW_TTL_SECONDS = 120
MAX_IMAGE_BYTES = 96 * 1024 * 1024  # a 2560² PNG is ~20 MB; anything beyond is not an image we made


def inbox(name: str) -> str:
    return f"mflux:worker:{name}:inbox"


def owner(name: str) -> str:
    return f"mflux:worker:{name}:owner"


def info(name: str) -> str:
    return f"mflux:worker:{name}:info"


def live(name: str) -> str:
    return f"mflux:worker:{name}:live"


def preview(name: str) -> str:
    return f"mflux:worker:{name}:preview"


def image(task_id: str, session: str) -> str:
    return f"mflux:image:{task_id}:{session}"


def inputs(task_id: str) -> str:
    return f"mflux:inputs:{task_id}"


def connect(url: str):
    """A Redis client for `redis://[user:password@]host:port/db` or `rediss://` (TLS), with timeouts that let a
    lost connection be noticed rather than hang."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=10)


def valid_name(name: str) -> bool:
    """Worker names go into keys: letters, digits, dot, dash, underscore; 1 to 64 of them."""
    return 1 <= len(name) <= 64 and all(c.isalnum() or c in "._-" for c in name)


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username + ':' if parts.username else ':'}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
