"""Our flask-smorest overrides, in one place: the Api (error bodies name the field), the Blueprint (JSON bodies
are parsed whatever their Content-Type), and a Blueprint for imitated APIs that documents their error shape."""

from __future__ import annotations

import json

from flask.json.provider import DefaultJSONProvider
from flask_smorest import Api, Blueprint, abort
from marshmallow import Schema
from webargs.core import missing
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from api.errors import ErrorSchema, describe_validation_errors
from api.fields import TooLongNumber

JSON_MAX_DIGITS = 4300  # Python's own limit for turning an int into text: json.loads raised ValueError (a 500)


def _integer(text: str) -> int | TooLongNumber:
    return TooLongNumber(len(text)) if len(text) > JSON_MAX_DIGITS else int(text)


def load_json(data: str | bytes) -> object:
    """Every JSON body the server reads, through one parser (webargs' and Flask's `request.get_json`)."""
    try:
        return json.loads(data, parse_int=_integer)
    except RecursionError:  # `[[[[…` 100 kB deep: Python's parser recurses, and this was a 500
        raise json.JSONDecodeError("nested too deeply", "<body>", 0) from None


class BoundedJsonProvider(DefaultJSONProvider):
    """Flask's JSON, reading bodies with `load_json` (the A1111 and OpenAI edit views use `request.get_json`)."""

    def loads(self, s: str | bytes, **kwargs) -> object:
        return load_json(s)


class LenientJsonParser(FlaskParser):
    """Parse a JSON body whatever its Content-Type (curl -d sends form encoding by default)."""

    def _raw_load_json(self, req):
        data = req.get_data(cache=True)
        if not data:
            return missing
        return load_json(data)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, message=f"Malformed JSON body: {error}", errors={"json": ["Malformed JSON body."]})


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = LenientJsonParser()


class JsonApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        payload, code, headers = super().handle_http_exception(error)
        # smorest drops the exception's own headers; 405 must keep `Allow` (RFC 9110), 413/416 theirs.
        own = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers = {**own, **(headers or {})}  # webargs passes headers=None
        if "message" not in payload:
            if "errors" in payload:
                payload["message"] = describe_validation_errors(payload["errors"])
            else:
                payload["message"] = error.description or error.name
        return payload, code, headers


class ImitationBlueprint(ApiBlueprint):
    """A blueprint of an imitated API (OpenAI, AUTOMATIC1111): its documented error responses (4xx, 5xx,
    default) have that API's shape, since its clients parse errors the way the real API sends them."""

    def __init__(self, *args, error_schema: type[Schema], shape: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._error_schema = error_schema
        self._error_name = error_schema.__name__.removesuffix("Schema")
        self._shape = shape
        self._prepare_doc_cbks.append(self._document_errors)

    def _document_errors(self, doc: dict, doc_info: dict, *, spec, **kwargs) -> dict:
        if self._error_name not in spec.components.schemas:
            spec.components.schema(self._error_name, schema=self._error_schema)
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{self._error_name}"}}}
        responses = doc.get("responses", {})
        for status, response in list(responses.items()):
            if str(status) != "default" and int(status) < 400:
                continue
            description = response.get("description") if isinstance(response, dict) else None
            description = description or f"An error, in {self._shape}'s shape."
            responses[status] = {"description": description, "content": content}
        return doc
