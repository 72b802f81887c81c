"""GET /api/status?task_id=<id>, the request every waiting client repeats, answered without Flask's machinery.

Polling clients send this many times a second each. Through Flask, flask-smorest and marshmallow it costs
about 0.6 ms of CPU under the GIL, which caps the whole server near 1,000 answers a second on two cores
(BENCHMARKS.md, benchmark 2). This WSGI middleware answers the plain form of that one request directly
from `TaskService.status` and `api.tasks.presenters.status_of`, the same functions the Flask view calls, with the
same body and headers; everything else goes to Flask untouched:
- any other method, path or query string (extra parameters, an invalid id: Flask's 422 explains it);
- an unknown task (Flask's JSON 404), or any error (Flask's handlers answer and log it);
- a request with an `Origin` header, whose CORS headers depend on it (flask-cors decides those);
- a server with API keys (api/auth.py checks them; whether the task is the caller's depends on the key), and
  debug mode (indented JSON).
The response headers are those of Flask's own first 200 answer to such a request, so CORS and any other
after-request headers are exactly what Flask sends. tests/test_hot_paths.py checks both paths agree, and
that the app has no request hook this path does not know about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from flask import Flask

from api.auth import keys_in_use
from api.context import service_of
from api.tasks.presenters import status_of
from api.tasks.views import status_code

PATH = "/api/status"
QUERY = re.compile(r"task_id=([0-9a-f]{16})")  # exactly what TASK_ID_PATTERN accepts, and nothing else

StartResponse = Callable[..., object]


class StatusFastPath:
    """Wraps `app.wsgi_app`; install last in `create_app`, after every other middleware."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self.wrapped = app.wsgi_app  # Flask: everything this does not answer itself
        self._headers: list[tuple[str, str]] | None = None  # learned from Flask's first 200 answer

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        task_id = self._eligible(environ)
        if task_id is None:
            return self.wrapped(environ, start_response)
        headers = self._headers
        if headers is None:
            return self.wrapped(environ, self._learn_headers(start_response))
        try:
            view = service_of(self._app).status(task_id)
        except Exception:  # unknown task, or a real error: Flask answers it as usual (404 JSON, logged 500)
            return self.wrapped(environ, start_response)
        if status_code(view) != 200:  # failed or cancelled: Flask answers those (410), they are polled rarely
            return self.wrapped(environ, start_response)
        # As Flask's jsonify: the app's JSON provider, compact separators, a final newline.
        body = (self._app.json.dumps(status_of(view), separators=(",", ":")) + "\n").encode()
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _eligible(self, environ: dict) -> str | None:
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("PATH_INFO") != PATH
            or "HTTP_ORIGIN" in environ
            or self._app.debug
            or keys_in_use(self._app.config)
        ):
            return None
        match = QUERY.fullmatch(environ.get("QUERY_STRING", ""))
        return match.group(1) if match else None

    def _learn_headers(self, start_response: StartResponse) -> StartResponse:
        def learning(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
            if status.startswith("200 "):
                self._headers = [(name, value) for name, value in headers if name.lower() != "content-length"]
            return start_response(status, headers, exc_info)

        return learning
