"""The blueprint class every /api resource uses: JSON bodies are parsed whatever their Content-Type."""

from __future__ import annotations

import json

from flask_smorest import Blueprint, abort
from webargs.core import missing, parse_json
from webargs.flaskparser import FlaskParser


class LenientJsonParser(FlaskParser):
    """Parse a JSON body whatever its Content-Type (curl -d sends form encoding by default)."""

    def _raw_load_json(self, req):
        data = req.get_data(cache=True)
        if not data:
            return missing
        try:
            return parse_json(data)
        except RecursionError:  # `[[[[…` 100 kB deep: Python's parser recurses, and this was a 500
            raise json.JSONDecodeError("nested too deeply", "<body>", 0) from None

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, message=f"Malformed JSON body: {error}", errors={"json": ["Malformed JSON body."]})


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = LenientJsonParser()
