"""Issue 14, item 17: the API's memory crept up with the tasks served while its Python heap stayed flat —
glibc gave each of the 16 HTTP threads a malloc arena of its own, and freed memory stayed spread over them.
server.py caps the arenas before the threads start; here the real server is loaded from 16 connections and
its arenas counted in /proc/<pid>/maps (the figures over 20,000 tasks are in BENCHMARKS.md, "API memory")."""

from __future__ import annotations

import platform
import sys
import threading
from pathlib import Path

import pytest
import requests

from server import MALLOC_ARENAS

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas"
)
ARENA_HEAP = 64 * 2**20  # a thread arena is one 64 MiB-aligned reservation of 64 MiB (glibc's HEAP_MAX_SIZE)


def thread_arenas(pid: int) -> int:
    """How many 64 MiB arena heaps the process has mapped: a read-write part at a 64 MiB boundary, the rest of
    the 64 MiB reserved behind it."""
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span, permissions = line.split()[:2]
        start, end = (int(address, 16) for address in span.split("-"))
        regions.append((start, end, permissions))
    count = 0
    for (start, end, permissions), following in zip(regions, [*regions[1:], None], strict=True):
        if start % ARENA_HEAP or not permissions.startswith("rw"):
            continue
        if following is not None and following[0] == end and following[2].startswith("---"):
            end = following[1]
        count += end - start == ARENA_HEAP
    return count


def test_sixteen_busy_connections_share_the_capped_malloc_arenas(server_factory):
    server = server_factory(demo_speed=1000)
    answers: list[int] = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(40):
                answers.append(session.post(server.url + "/api/generate", json={"prompt": "p" * 500}).status_code)
                answers.append(session.get(server.url + "/api/tasks", params={"limit": 50}).status_code)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) == {200}  # (this load once found a race in the queue's plan: tests/test_waits.py)
    assert thread_arenas(server.process.pid) <= MALLOC_ARENAS - 1  # the main arena is not one of these
