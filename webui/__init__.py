"""The bundled web UI: static files, no build step."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
