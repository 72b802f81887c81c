"""Absolute URLs the server gives out name its own address, never the request's Host header (issue 14, item 15).

A Host header is the client's to choose (or a proxy's): copied into a link, it lets whoever sends a request
point the answer at another machine. Links use `--public-url`, else the address the server listens on.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
import requests

EVIL = {"Host": "evil.example"}
URL_ANSWER = {"prompt": "a link", "size": "256x256", "response_format": "url"}


def redirect_location(server, path: str) -> str:
    """The Location of the 308 for a path with a doubled slash inside, the server's one redirect."""
    response = requests.get(server.url + path, headers=EVIL, allow_redirects=False, timeout=30)
    assert response.status_code == 308, response.text[:300]
    return response.headers["Location"]


def raw_get(server, path: str, request_target_host: str) -> bytes:
    """A request whose request line is absolute (`GET http://host/path`): another way to name a host."""
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(f"GET http://{request_target_host}{path} HTTP/1.1\r\nHost: {request_target_host}\r\n"
                     "Connection: close\r\n\r\n".encode())  # fmt: skip
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_openai_url_answers_and_redirects_name_the_listening_address(shared_server):
    answer = requests.post(shared_server.url + "/v1/images/generations", json=URL_ANSWER, headers=EVIL, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    link = answer.json()["data"][0]["url"]
    assert link.startswith(shared_server.url + "/api/image?"), link
    assert requests.get(link, timeout=30).status_code == 200  # and it works
    assert redirect_location(shared_server, "/api//ps") in ("/api/ps", shared_server.url + "/api/ps")
    assert b"evil.example" not in raw_get(shared_server, "/api//ps", "evil.example")


@pytest.mark.parametrize("public", ["https://img.example.org", "https://img.example.org/mflux/"])
def test_public_url_is_the_base_of_every_link(server_factory, public):
    server = server_factory("--public-url", public)
    answer = requests.post(server.url + "/v1/images/generations", json=URL_ANSWER, headers=EVIL, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    link = answer.json()["data"][0]["url"]
    assert link.startswith(public.rstrip("/") + "/api/image?task_id="), link
    assert requests.get(server.url + link.removeprefix(public.rstrip("/")), timeout=30).status_code == 200
    assert urlsplit(redirect_location(server, "/v1//models")).netloc in ("", "img.example.org")
