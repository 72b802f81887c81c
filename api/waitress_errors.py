"""Errors waitress answers itself, before the app runs, as JSON in the shape of the API the request names.

Waitress parses each request on its I/O loop and refuses some without calling the app: a malformed request line
or header (400), a Content-Length beyond `max_request_body_size` (413, see api/serving.py), headers beyond
`max_request_header_size` (431), a Transfer-Encoding other than chunked (501), broken chunked encoding (400).
Its `ErrorTask` writes those as plain text. `install` gives the server a channel whose error task asks the app
for the body instead (`api.errors.error_response`: the shape every other error under that path prefix has), and
whose parser remembers the start of the request line, which waitress does not keep when the headers are too
large. These answers carry no CORS headers (flask-cors adds those to the app's own answers); browsers do not
send such requests.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from flask import Flask
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import Error, RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from api.errors import error_response

log = logging.getLogger(__name__)

REQUEST_LINE_BYTES = 8192  # enough for any request line worth routing by; longer ones get our own shape
TARGET = re.compile(rb"\s*\S+ +(\S+)")  # the request target, after the method: a path or an absolute URL
PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")  # the characters a path may have (RFC 3986)


class RememberingParser(HTTPRequestParser):
    """Keeps the first bytes of the request, so that an error found before its line was parsed can name its API."""

    start = b""

    def received(self, data: bytes) -> int:
        if len(self.start) < REQUEST_LINE_BYTES and not self.headers_finished:
            self.start += data[: REQUEST_LINE_BYTES - len(self.start)]
        return super().received(data)


def requested_path(start: bytes) -> str:
    """The path the request line names, as far as it can be told; "/" when it cannot."""
    match = TARGET.match(start)
    try:
        path = urlsplit(match.group(1).decode("latin-1")).path if match else ""
    except ValueError:  # an absolute URL with a broken authority
        path = ""
    routable = PATH.match(path)
    return routable.group(0) if routable else "/"


def message(error: Error, adj: Adjustments) -> str:
    if isinstance(error, RequestEntityTooLarge):
        return f"The request body is larger than this server reads (at most {adj.max_request_body_size:,} bytes)."
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return f"The request headers are larger than this server reads (at most {adj.max_request_header_size:,} bytes)."
    return f"{error.reason}: {str(error.body).rstrip('.')}."


class JsonErrorTask(ErrorTask):
    def execute(self) -> None:
        error, app = self.request.error, self.channel.app
        try:
            with app.test_request_context(requested_path(getattr(self.request, "start", b""))):
                response = error_response(error.code, message(error, self.channel.adj))
                body, content_type = response.get_data(), response.content_type
        except Exception:  # never worse than waitress' own answer
            log.exception("could not answer a refused request as JSON")
            return super().execute()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", content_type))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    app: Flask  # the app that shapes the errors (waitress' own `server.application` is wrapped in middleware)
    parser_class = RememberingParser
    error_task_class = JsonErrorTask


def install(server: object, app: Flask) -> None:
    """Make what `waitress.create_server` returned (one server, or several behind a MultiSocketServer) answer
    the requests it refuses as JSON, shaped by `app`."""
    channel = type("JsonErrorChannel", (JsonErrorChannel,), {"app": app})
    servers = [server] if isinstance(server, BaseWSGIServer) else list(getattr(server, "map", {}).values())
    for each in servers:
        if isinstance(each, BaseWSGIServer):
            each.channel_class = channel
