"""/v1: the OpenAI Images API, so chat programs that speak it (Open WebUI, LibreChat, the `openai` package) can
use this server as their image backend. Their images are queued like any others, with the same priorities.

Differences from OpenAI, by design:
- OpenAI's model names (dall-e-2, dall-e-3, gpt-image-*) are accepted and mean the loaded model, because chat
  programs send them by default; any other name but the loaded model's is refused (400, param "model").
- Sizes may be any "WxH" within the server's limits; sides are rounded down to multiples of 16.
- `quality` and `output_compression` set the JPEG/WEBP encoding quality; style, background, user: ignored.
- A url answer points at GET /api/image?task_id=…&delete=false on this server (needs the API key if one is set).
- A call blocks until its images are done; if the client hangs up meanwhile, its tasks are cancelled.
Errors have OpenAI's shape (api/openai_images/errors.py).
"""

from __future__ import annotations

import base64
import time

from flask import Response, current_app, url_for
from flask.views import MethodView
from werkzeug.exceptions import HTTPException

from api.context import service
from api.errors import describe_validation_errors
from api.openai_images.errors import OpenAIErrorSchema, openai_error
from api.openai_images.schemas import (
    ImageGenerationSchema,
    ImagesRequest,
    ImagesResponseSchema,
    ModelListSchema,
    ModelSchema,
    is_served_model,
    served_model_names,
)
from api.slots import generate_and_wait, require_count
from api.smorest import ImitationBlueprint
from core.submissions import GenerationRequest
from core.tasks import Task, TaskStatus

blp = ImitationBlueprint(
    "openai",
    __name__,
    url_prefix="/v1",
    description="OpenAI-compatible image generation (for chat programs).",
    error_schema=OpenAIErrorSchema,
    shape="OpenAI",
)

STARTED_AT = "mflux_server.started_at"


@blp.record_once
def _remember_start(state) -> None:
    state.app.extensions.setdefault(STARTED_AT, int(time.time()))


@blp.route("/images/generations")
class ImageGenerations(MethodView):
    @blp.arguments(ImageGenerationSchema, error_status_code=400)
    @blp.response(200, ImagesResponseSchema)
    @blp.alt_response(400, description="Invalid parameters; error.param names the field.")
    @blp.alt_response(401, description="Missing or wrong API key.")
    @blp.alt_response(409, description="The images were cancelled on the server (not retried by OpenAI clients).")
    @blp.alt_response(429, description="The queue is full; see Retry-After.")
    @blp.alt_response(500, description="Generation failed (not retried by OpenAI clients).")
    @blp.alt_response(503, description="The engine is unavailable, or too many blocking calls are open.")
    def post(self, wanted: ImagesRequest):
        """Generate images from a prompt, as OpenAI's `POST /v1/images/generations`; blocks until they are done."""
        require_count(wanted.n)
        generation = GenerationRequest(
            prompt=wanted.prompt, width=wanted.width, height=wanted.height, format=wanted.format, quality=wanted.quality
        )
        tasks = generate_and_wait([generation] * wanted.n)
        return _images_response(tasks, wanted)


def _images_response(tasks: list[Task], wanted: ImagesRequest) -> dict | Response:
    no_retry = {"x-should-retry": "false"}  # the openai package would otherwise send the whole request again
    for task in tasks:
        if task.status is TaskStatus.FAILED:
            message = f"Image generation failed: {task.error}"
            return openai_error(500, message, code="generation_failed", headers=no_retry)
    for task in tasks:
        if task.status is not TaskStatus.DONE:
            message = "The image generation was cancelled on the server before it finished."
            return openai_error(409, message, code="cancelled", headers=no_retry)
    data = []
    for task in tasks:
        if wanted.response_format == "url":
            data.append({"url": url_for("images.ImageView", task_id=task.id, delete="false", _external=True)})
        else:
            image, _ = service().image(task.id, delete=True)
            data.append({"b64_json": base64.b64encode(image).decode("ascii")})
    params = tasks[0].params
    return {
        "created": int(time.time()),
        "data": data,
        "output_format": tasks[0].output.format.value.lower(),
        "size": f"{params.width}x{params.height}",
    }


def _model(model_id: str) -> dict:
    return {
        "id": model_id,
        "object": "model",
        "created": current_app.extensions.get(STARTED_AT, 0),
        "owned_by": "mflux-server",
    }


@blp.route("/models")
class Models(MethodView):
    @blp.response(200, ModelListSchema)
    def get(self):
        """The loaded model, as OpenAI's `GET /v1/models` (its aliases are not listed, but accepted)."""
        return {"object": "list", "data": [_model(name) for name in served_model_names()]}


@blp.route("/models/<model_id>")
class Model(MethodView):
    @blp.response(200, ModelSchema)
    @blp.alt_response(404, description="Not a name of the loaded model.")
    def get(self, model_id: str):
        """One model: the loaded one, under its own name or one of OpenAI's names."""
        if not is_served_model(model_id):
            message = f"The model {model_id!r} does not exist here; this server runs {served_model_names()[0]!r}."
            return openai_error(404, message, param="model", code="model_not_found")
        return _model(model_id)


@blp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    """Errors raised through flask-smorest (webargs' validation, abort) in OpenAI's shape."""
    data = getattr(error, "data", None) or {}
    messages = data.get("errors") or data.get("messages")
    param = None
    if data.get("message"):
        message = data["message"]
    elif isinstance(messages, dict):
        message = describe_validation_errors(messages)
        problems = next(iter(messages.values()), None)
        param = next(iter(problems), None) if isinstance(problems, dict) else None
    else:
        message = error.description or error.name
    status = error.code or 500
    code = "invalid_value" if param else None
    return openai_error(status, message, param=param, code=code, headers=data.get("headers"))
