"""The server's own address in the absolute URLs it gives out, never the request's Host header.

A Host header (or the host of an absolute request line) is the client's to choose, or a proxy's: copied into a
link, it would let whoever sends a request point the answer at another machine (the OpenAI `url` answers, the
Location of a redirect). Links start with the configured public URL (`--public-url`, in `MFLUX_PUBLIC_URL`),
else the address the server listens on, as the WSGI server reports it (SERVER_NAME and SERVER_PORT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from flask import Flask, current_app, request, url_for

CONFIG_KEY = "MFLUX_PUBLIC_URL"
REQUESTED_HOST = "mflux_server.requested_host"  # the Host header as it came, should anything need it
DEFAULT_PORTS = {"http": "80", "https": "443"}


def listening_url(environ: dict) -> str:
    scheme, port = environ.get("wsgi.url_scheme", "http"), str(environ.get("SERVER_PORT", ""))
    name = environ.get("SERVER_NAME", "localhost")
    return f"{scheme}://{name}" + ("" if not port or port == DEFAULT_PORTS.get(scheme) else f":{port}")


def public_url(app: Flask, environ: dict) -> str:
    """The base of every absolute URL: scheme, host and any path prefix, without a final slash."""
    return (app.config.get(CONFIG_KEY) or listening_url(environ)).rstrip("/")


class PublicHost:
    """Wraps `app.wsgi_app`: the request's host and scheme become the public URL's before Flask builds any URL
    from them (url_for with `_external`, the redirect werkzeug answers for a doubled slash)."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self.wrapped = app.wsgi_app

    def __call__(self, environ: dict, start_response: Callable[..., object]) -> Iterable[bytes]:
        base = urlsplit(public_url(self._app, environ))
        environ[REQUESTED_HOST] = environ.get("HTTP_HOST")
        environ["HTTP_HOST"] = base.netloc
        environ["wsgi.url_scheme"] = base.scheme
        return self.wrapped(environ, start_response)


def external_url_for(endpoint: str, **values: object) -> str:
    """An absolute link to a route: the public URL (with its path prefix, if it has one), then the route."""
    return public_url(current_app, request.environ) + url_for(endpoint, **values)
