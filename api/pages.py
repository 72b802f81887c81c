"""The web UI at /, and Swagger UI's assets served locally (the server must work without internet)."""

from __future__ import annotations

from flask import Blueprint, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from webui import STATIC_DIR

blp = Blueprint("pages", __name__)

SWAGGER_ASSETS = "/swagger-assets/"

FALLBACK_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mflux-server</title></head>
<body><h1>mflux-server</h1><p>The API is documented at <a href="swagger">/swagger</a>.</p></body></html>"""


@blp.get("/")
@blp.get("/index.html")  # where the original server served its web UI
def index():
    if (STATIC_DIR / "index.html").is_file():
        response = send_from_directory(STATIC_DIR, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response
    return FALLBACK_PAGE


@blp.get("/ui/<path:filename>")
def ui_asset(filename: str):
    response = send_from_directory(STATIC_DIR, filename)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.get(f"{SWAGGER_ASSETS}<path:filename>")
def swagger_asset(filename: str):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
