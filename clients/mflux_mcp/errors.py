"""What an agent reads when a tool fails: the server's own message, and what to do about it.

The agent cannot see the HTTP exchange, so each message says which server, what it answered, and the next
step (fix an argument, retry later, check the key, start the server).
"""

from __future__ import annotations

import requests

from mflux_client import (
    ImageNotReady,
    InvalidRequest,
    MfluxError,
    MfluxServerError,
    QueueFull,
    ServerUnavailable,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    Unauthorized,
)


class ToolProblem(Exception):
    """A failure the tools detect themselves (e.g. an unknown model name); its message is for the agent."""


def explain(error: BaseException, server_url: str, api_key_given: bool) -> str:
    """One paragraph for the agent about `error`, raised while talking to the mflux-server at `server_url`."""
    if isinstance(error, ToolProblem):
        return str(error)
    if isinstance(error, InvalidRequest):
        return f"The mflux-server refused the request ({error.status_code}): {error.message} Fix it and retry."
    if isinstance(error, QueueFull):
        after = f" Retry after {error.retry_after:g} s." if error.retry_after is not None else " Retry later."
        return f"The mflux-server's queue is full (429): {error.message}{after}"
    if isinstance(error, Unauthorized):
        hint = (
            "The API key given to mflux-server-mcp (--api-key or MFLUX_SERVER_API_KEY) is not the server's."
            if api_key_given
            else "Give mflux-server-mcp the key: MFLUX_SERVER_API_KEY in the env of its MCP client configuration."
        )
        return f"The mflux-server at {server_url} refused access ({error.status_code}): {error.message} {hint}"
    if isinstance(error, ServerUnavailable):
        if error.status_code is None:
            return (
                f"The mflux-server at {server_url} cannot be reached ({_reason_of(error.message)}). "
                "Is it running, and is the --server URL of mflux-server-mcp right?"
            )
        return f"The mflux-server at {server_url} is unavailable ({error.status_code}): {error.message}"
    if isinstance(error, TaskNotFound):
        return f"{error.message} (Unknown task id, or its task expired on the server.)"
    if isinstance(error, ImageNotReady):
        return error.message
    if isinstance(error, TaskFailed):
        return f"Task {error.task_id} failed on the server: {error.error or 'no reason given'}"
    if isinstance(error, TaskCancelled):
        return f"Task {error.task_id} was cancelled on the server (by cancel_task, another client, or its web UI)."
    if isinstance(error, MfluxServerError):
        return f"The mflux-server at {server_url} answered with an error ({error.status_code}): {error.message}"
    if isinstance(error, MfluxError):
        return str(error)
    if isinstance(error, requests.exceptions.JSONDecodeError):
        return f"The server at {server_url} answered, but not as an mflux-server does (no JSON). Check --server."
    if isinstance(error, requests.RequestException):
        return f"Talking to the mflux-server at {server_url} failed: {type(error).__name__}: {error}"
    return f"Unexpected error in mflux-server-mcp: {type(error).__name__}: {error}"


def _reason_of(message: str) -> str:
    """'cannot reach the server at URL: Connection refused' → 'Connection refused' (the URL is said already)."""
    return message.rsplit(": ", 1)[-1] if ": " in message else message
