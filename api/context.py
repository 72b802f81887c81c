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


def caller() -> Caller:
    """Who is asking: as api/auth.py identified the key presented, or (a server without keys) an admin told
    apart from other clients by address."""
    return getattr(request, "mflux_caller", None) or Caller(client=request.remote_addr or "")


def client_id() -> str:
    """Who is asking, for per-client limits: the API key's name if keys are named, else the address."""
    return caller().client
