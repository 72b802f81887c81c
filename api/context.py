"""How views reach the shared state: through the app, never through module globals."""

from __future__ import annotations

from flask import Flask, current_app, request

from core.submissions import Caller
from taskqueue.service import TaskService

EXTENSION = "mflux_server"


def service_of(app: Flask) -> TaskService:
    return app.extensions[EXTENSION]


def service() -> TaskService:
    return current_app.extensions[EXTENSION]


def client_id() -> str:
    """Who is asking, for per-client limits: the API key's holder if keys are in use, else the address."""
    return getattr(request, "mflux_client", None) or request.remote_addr or ""


def caller() -> Caller:
    return Caller(client=client_id())
