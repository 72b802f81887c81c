"""Named API keys: a name, a secret, a role, and optionally the key's own cap on waiting tasks.

They come from a keys file (`--api-keys-file`), TOML or JSON, never from the command line (command lines are
visible to every user of the machine):

    [keys.alice]                # TOML; JSON: {"keys": {"alice": {"key": "…", "role": "user"}}}
    key = "…"                   # the secret clients send (at least 16 characters)
    role = "user"               # user (the default): its own tasks only; admin: every task
    max_waiting = 20            # optional: most tasks this key may have waiting (else --max-waiting-per-client)

The single `--api-key` (or MFLUX_SERVER_API_KEY) is an admin key named `api-key`. What each role may see is
decided in core/rules.py (`visible_owner`); api/auth.py matches a presented secret to its key.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Role(StrEnum):
    USER = "user"  # sees, fetches and cancels its own tasks; others' only as anonymous entries of the queue
    ADMIN = "admin"  # sees and manages every task


LEGACY_NAME = "api-key"  # the name of the single --api-key / MFLUX_SERVER_API_KEY (an admin key)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_SECRET_CHARS = 16


@dataclass(frozen=True)
class ApiKey:
    name: str
    secret: str = field(repr=False)  # never in a log line or a traceback
    role: Role = Role.USER
    max_waiting: int | None = None  # None: the server's --max-waiting-per-client

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN


class KeysFileError(ValueError):
    """A keys file that cannot be used; the message names the file and the entry (never a secret)."""


def load_keys(path: Path) -> tuple[ApiKey, ...]:
    """The keys of a keys file: JSON if its name ends in .json, else TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise KeysFileError(f"cannot read the keys file {path}: {error.strerror or error}") from error
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise KeysFileError(f"the keys file {path} does not parse: {error}") from None
    return parse_keys(data, str(path))


def parse_keys(data: object, where: str = "the keys file") -> tuple[ApiKey, ...]:
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise KeysFileError(f"{where}: expected a table 'keys' of name = {{key = ..., role = ...}}")
    keys = tuple(_key(name, entry, where) for name, entry in entries.items())
    secrets = [key.secret for key in keys]
    if len(set(secrets)) != len(secrets):
        raise KeysFileError(f"{where}: two keys have the same secret; each name needs its own")
    return keys


def _key(name: object, entry: object, where: str) -> ApiKey:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == LEGACY_NAME:
        raise KeysFileError(
            f"{where}: {name!r} is not a key name (letters, digits and _ . @ -, up to 64; {LEGACY_NAME!r} is "
            "the --api-key's)"
        )
    if not isinstance(entry, dict) or set(entry) - {"key", "role", "max_waiting"}:
        raise KeysFileError(f"{where}: key {name!r}: expected key, role and optionally max_waiting")
    secret = entry.get("key")
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS or secret != secret.strip():
        raise KeysFileError(f"{where}: key {name!r}: 'key' must be a secret of at least {MIN_SECRET_CHARS} characters")
    role = entry.get("role", Role.USER.value)
    if role not in {r.value for r in Role}:
        raise KeysFileError(f"{where}: key {name!r}: role must be 'user' or 'admin', not {role!r}")
    cap = entry.get("max_waiting")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise KeysFileError(f"{where}: key {name!r}: max_waiting must be a whole number of at least 1")
    return ApiKey(name, secret, Role(role), cap)
