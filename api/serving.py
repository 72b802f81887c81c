"""How waitress serves the app: its limits and timeouts, each chosen so slow or stuck clients starve no one.

Waitress reads requests and writes responses on one asynchronous loop and runs the app on a pool of threads.
A request reaches a thread only once its headers and whole body have arrived, so a client that sends slowly
(slowloris) or never finishes its body costs a connection slot and a buffer, never a thread. A response is
handed to the loop and the thread is free again, so a client that never reads costs a buffer (spilled to a
temporary file beyond `outbuf_overflow`) until its connection is closed as idle. What remains to bound is
therefore: connections, buffers in memory, and how long an idle connection may hold its slot.

What this does not stop (tests/test_slow_clients.py shows what it does): one host opening more trickling
connections than `connection_limit`, since waitress has no per-address limit or deadline for a whole request;
and a client that pipelines many requests for the largest images and never reads, which can hold one thread
per connection once its unsent answers pass `outbuf_high_watermark`. On an untrusted network, put a reverse
proxy (nginx, Caddy) in front.
"""

from __future__ import annotations

import sys
from typing import Any

MB = 1024 * 1024

# How long a thread may hold the GIL while another wants it, in ms (Python's default: 5). A thread that gave the
# GIL up for a moment (a socket write, an SQLite step, a lock) waits that long to get it back whenever another
# thread is running Python, and every request does so several times: at 5 ms the waits made the tail of
# benchmark 2's mixed load; at 1-2 ms its p99 was 8-30 % lower (run to run), at 0.2 ms the switching itself cost
# more (BENCHMARKS.md, benchmark 2).
GIL_SWITCH_MS = 2.0


def set_gil_switch_interval(milliseconds: float) -> None:
    """Apply `--gil-switch-ms` to this process; call before the server's threads start."""
    sys.setswitchinterval(milliseconds / 1000)


def waitress_options(threads: int, max_body_bytes: int) -> dict[str, Any]:
    """Keyword arguments for `waitress.create_server`; `max_body_bytes` is the largest body the app accepts."""
    return {
        "ident": "mflux-server",
        # Threads run the app. Short requests take milliseconds; event streams and blocking generation calls
        # hold one each, and api/slots.py keeps some free for everything else.
        "threads": threads,
        # Each connection costs one file descriptor and small buffers, nothing more, so allow many: with the
        # default 100, a hundred trickling connections would stop waitress accepting anyone else.
        "connection_limit": 1000,
        # select() cannot watch descriptors above 1023; poll() can, and the limit above may need that many.
        "asyncore_use_poll": True,
        # A connection that sends and receives nothing for this long is closed (a keep-alive client simply
        # reconnects). It never cuts a request the app is still serving, such as an event stream.
        "channel_timeout": 30,
        # How often idle connections are looked for: a stuck one holds its slot at most this much longer.
        "cleanup_interval": 5,
        # Keep reading while a request runs, so a client's hang-up is noticed; one request ahead at most.
        "channel_request_lookahead": 1,
        # A request is at most a few kB of headers and a body within the largest the app allows (a few kB of
        # JSON; with images, api/bodies.py). Bodies up to four times that still reach Flask, so their 413 is
        # JSON like every other error; beyond, waitress refuses them before buffering a byte (a plain-text 413).
        # Beyond 64 kB a body is buffered in a temporary file, not in memory.
        "max_request_header_size": 64 * 1024,
        "max_request_body_size": 4 * max_body_bytes,
        "recv_bytes": 64 * 1024,  # a 256 kB body in 4 reads, not 32
        # Bytes buffered in memory per connection before spilling to a temporary file, inbound and outbound:
        # a thousand stuck clients then hold at most ~0.3 GB of memory, not gigabytes.
        "inbuf_overflow": 64 * 1024,
        "outbuf_overflow": 256 * 1024,
        # Before it answers a connection's next request, a thread waits while more than this is unsent there.
        # Above twice the largest response (a 2560 x 2560 PNG as base64, about 26 MB): a client that never
        # reads does not pin a thread with a request or two (the default 16 MB would, with one).
        "outbuf_high_watermark": 64 * MB,
    }
