"""/v1: the OpenAI Images API, so chat programs that speak it (Open WebUI, LibreChat, the `openai` package) can
use this server as their image backend. Their images are queued like any others, with the same priorities.

Differences from OpenAI, by design:
- `model` picks any model the server offers; OpenAI's model names (dall-e-2, dall-e-3, gpt-image-*) mean the
  default model, because chat programs send them by default; any other name is refused (400, param "model").
- Sizes may be any "WxH" within the server's limits; sides are rounded down to multiples of 16.
- `quality` and `output_compression` set the JPEG/WEBP encoding quality; style and user are ignored;
  `background: transparent` is refused (these models make opaque images).
- Edits take any model: an edit model reads the images as references; a text-to-image model starts an
  image-to-image from the first one (`image_strength`, our extension, says how much of it is kept).
- A url answer points at GET /api/image?task_id=…&delete=false on this server (needs the API key if one is set).
- A call blocks until its images are done; if the client hangs up meanwhile, its tasks are cancelled.
Errors have OpenAI's shape (api/openai_images/errors.py).
"""

from __future__ import annotations

import base64
import time
from dataclasses import replace

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from api.bodies import takes_images
from api.context import caller, service
from api.errors import describe_validation_errors
from api.openai_images.errors import OpenAIErrorSchema, openai_error
from api.openai_images.schemas import (
    ImageEditFormSchema,
    ImageEditJsonSchema,
    ImageGenerationSchema,
    ImagesRequest,
    ImagesResponseSchema,
    ModelListSchema,
    ModelSchema,
    is_openai_name,
    served_model_names,
)
from api.openai_images.streaming import StreamRequest, events
from api.public_url import external_url_for
from api.slots import client_disconnected, generate_and_wait, held_requests, require_count
from api.smorest import ImitationBlueprint
from core.submissions import GenerationRequest, MaskMeaning, MaskRequest
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
# The answer: the images as JSON, or with `stream: true` their events (api/openai_images/streaming.py).
JSON_OR_EVENTS = {
    "description": "The images; with stream: true, Server-Sent Events (partial images, then each image).",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ImagesResponse"}},
        "text/event-stream": {
            "schema": {
                "description": "Each event: its type, and its data as one line of JSON (an object with that `type`).",
                "type": "object",
                "properties": {
                    "event": {"type": "string", "example": "image_generation.partial_image"},
                    "data": {"type": "string", "example": '{"type":"image_generation.completed","b64_json":"…"}'},
                },
                "required": ["data"],
            }
        },
    },
}


@blp.record_once
def _remember_start(state) -> None:
    state.app.extensions.setdefault(STARTED_AT, int(time.time()))


@blp.route("/images/generations")
class ImageGenerations(MethodView):
    @blp.arguments(ImageGenerationSchema, error_status_code=400)
    @blp.response(200, ImagesResponseSchema)
    @blp.doc(responses={"200": JSON_OR_EVENTS})
    @blp.alt_response(400, description="Invalid parameters; error.param names the field.")
    @blp.alt_response(401, description="Missing or wrong API key.")
    @blp.alt_response(409, description="The images were cancelled on the server (not retried by OpenAI clients).")
    @blp.alt_response(429, description="The queue is full; see Retry-After.")
    @blp.alt_response(500, description="Generation failed (not retried by OpenAI clients).")
    @blp.alt_response(503, description="The engine is unavailable, or too many blocking calls are open.")
    def post(self, wanted: ImagesRequest):
        """Generate images from a prompt, as OpenAI's `POST /v1/images/generations`; blocks until they are done,
        or with `stream: true` sends `image_generation.partial_image` and `.completed` events as they come."""
        return _answer(wanted, "image_generation")


@blp.route("/images/edits")
@takes_images
class ImageEdits(MethodView):
    @blp.doc(requestBody={"required": True, "content": {
        "multipart/form-data": {"schema": ImageEditFormSchema, "encoding": {"image[]": {"style": "form"}}},
        "application/json": {"schema": ImageEditJsonSchema},
    }})  # fmt: skip
    @blp.response(200, ImagesResponseSchema)
    @blp.doc(responses={"200": JSON_OR_EVENTS})
    @blp.alt_response(400, description="Invalid parameters or images; error.param names the field.")
    @blp.alt_response(401, description="Missing or wrong API key.")
    @blp.alt_response(409, description="The images were cancelled on the server (not retried by OpenAI clients).")
    @blp.alt_response(413, description="The images are larger than this server takes.")
    @blp.alt_response(429, description="The queue is full; see Retry-After.")
    @blp.alt_response(500, description="Generation failed (not retried by OpenAI clients).")
    @blp.alt_response(503, description="The engine is unavailable, or too many blocking calls are open.")
    def post(self):
        """Edit images, as OpenAI's `POST /v1/images/edits`: multipart `image` (or repeated `image[]`), an
        optional `mask` (a PNG, transparent where the first image is edited; without one, the image's own
        transparency), `prompt`, `n`, `size`, `model`, … With an edit model, the images are its references; with
        a text-to-image model, the first is the start of an image-to-image. Blocks, or streams `image_edit.*`."""
        return _answer(_edit_request(), "image_edit")


def _edit_request() -> ImagesRequest:
    """The edit as sent: multipart (the `openai` package, curl -F) or JSON (images as data URLs)."""
    if request.mimetype == "multipart/form-data":
        try:
            wanted = ImageEditFormSchema().load(request.form)
        except ValidationError as error:
            abort(400, errors={"form": error.messages})
        images = [part.read() for name in ("image", "image[]") for part in request.files.getlist(name)]
        if not images:
            abort(400, errors={"form": {"image": ["Send the image to edit as the multipart file part `image`."]}})
        mask = request.files.get("mask")
        return replace(wanted, images=tuple(images), mask=mask.read() if mask else None)
    try:
        return ImageEditJsonSchema().load(request.get_json(silent=True) or {})
    except ValidationError as error:
        abort(400, errors={"json": error.messages})


def _answer(wanted: ImagesRequest, kind: str) -> dict | Response:
    require_count(wanted.n)
    generation = _generation(wanted)
    if not wanted.stream:
        return _images_response(generate_and_wait([generation] * wanted.n), wanted)
    tasks_service, slots = service(), held_requests()
    slots.acquire()
    try:
        views = tasks_service.submit_all([generation] * wanted.n, caller(), awaited=True)
    except BaseException:
        slots.release()
        raise
    stream = StreamRequest(kind, wanted.partial_images, wanted.size_text, wanted.quality_text, wanted.background,
                           wanted.output_format)  # fmt: skip
    body = events(tasks_service, [view.task.id for view in views], stream, client_disconnected())
    response = Response(body, mimetype="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                     "X-Accel-Buffering": "no"})  # fmt: skip
    response.call_on_close(slots.release)
    return response


def _generation(wanted: ImagesRequest) -> GenerationRequest:
    """OpenAI's request as ours: its mask is transparent where to edit, and without a mask the first image's own
    transparency is the mask (OpenAI's rule)."""
    mask = None
    if wanted.mask is not None:
        mask = MaskRequest(wanted.mask, MaskMeaning.TRANSPARENT)
    elif wanted.images:
        mask = MaskRequest(wanted.images[0], MaskMeaning.TRANSPARENT, if_transparent=True)
    return GenerationRequest(
        prompt=wanted.prompt, model=wanted.model, width=wanted.width, height=wanted.height, format=wanted.format,
        quality=wanted.quality, callback_url=wanted.callback_url, init_images=wanted.images, mask=mask,
        image_strength=wanted.image_strength,
    )  # fmt: skip


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
            data.append({"url": external_url_for("images.ImageView", task_id=task.id, delete="false")})
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
        """Every model this server offers, as OpenAI's `GET /v1/models` (aliases and OpenAI's names are accepted,
        not listed)."""
        return {"object": "list", "data": [_model(name) for name in served_model_names()]}


@blp.route("/models/<model_id>")
class Model(MethodView):
    @blp.response(200, ModelSchema)
    @blp.alt_response(404, description="Not a model this server offers.")
    def get(self, model_id: str):
        """One model, by its name, an alias, or one of OpenAI's names (the default model)."""
        if not (is_openai_name(model_id) or service().find_model(model_id)):
            offered = ", ".join(served_model_names())
            message = f"The model {model_id!r} does not exist here; this server offers {offered}."
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
