"""/sdapi/v1: enough of the AUTOMATIC1111 web UI's API for chat programs' A1111 integrations (Open WebUI,
SillyTavern) to connect, list the model, generate and follow progress. Their images join the shared queue.

Differences from A1111, by design:
- One model: sd-models lists it, and options only accept it as `sd_model_checkpoint`.
- Samplers, schedulers, upscalers, hires fix, styles and scripts are accepted and ignored.
- `progress`, `interrupt` and `skip` concern the caller's own tasks (told apart by address, as for queue
  limits): one client can neither watch nor stop another's images.
- txt2img blocks until its images are done; if the client hangs up meanwhile, its tasks are cancelled.
Errors have A1111's shape (api/a1111/errors.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from datetime import datetime

from flask import Response, jsonify
from flask.views import MethodView
from PIL import Image
from werkzeug.exceptions import HTTPException

from api.a1111.errors import A1111ErrorSchema, a1111_error
from api.a1111.schemas import OptionsSchema, ProgressArgsSchema, Txt2ImgSchema
from api.context import client_id, service
from api.errors import describe_validation_errors
from api.slots import generate_and_wait, require_count
from api.smorest import ImitationBlueprint
from core import __version__, rules
from core.errors import InvalidRequest
from core.rules import MAX_SEED
from core.submissions import GenerationRequest
from core.tasks import ImageFormat, Task, TaskStatus
from taskqueue.service import TaskView

blp = ImitationBlueprint(
    "a1111",
    __name__,
    url_prefix="/sdapi/v1",
    description="AUTOMATIC1111-compatible API (for chat programs).",
    error_schema=A1111ErrorSchema,
    shape="AUTOMATIC1111",
)

log = logging.getLogger(__name__)

SAMPLER = "Euler"  # FLUX models sample with a flow-matching Euler scheduler, whatever the client picks
DEFAULT_SIDE = 512  # A1111's default width and height


def _json_null() -> Response:
    return Response("null", mimetype="application/json")  # what A1111 answers for "done, nothing to say"


# -- the model ---------------------------------------------------------------------------------------------


def _model_item() -> dict:
    info = service().info
    sha256 = hashlib.sha256(f"{info.name}:{info.model}".encode()).hexdigest()
    return {
        "title": f"{info.model} [{sha256[:10]}]",
        "model_name": info.model,
        "hash": sha256[:10],
        "sha256": sha256,
        "filename": info.model,
        "config": None,
    }


def _names_of_model() -> set[str]:
    item = _model_item()
    return {item["title"], item["model_name"], item["hash"], item["sha256"]}


@blp.route("/sd-models")
class SdModels(MethodView):
    @blp.response(200)
    def get(self):
        """The one loaded model, as A1111 lists checkpoints (title, model_name, hash, sha256, filename, config)."""
        return jsonify([_model_item()])


@blp.route("/options")
class Options(MethodView):
    @blp.response(200)
    def get(self):
        """The options clients read: the checkpoint above all (Open WebUI and SillyTavern check it on connect)."""
        item = _model_item()
        return jsonify({
            "sd_model_checkpoint": item["title"],
            "sd_checkpoint_hash": item["sha256"],
            "sd_vae": "Automatic",
            "samples_format": "png",
            "CLIP_stop_at_last_layers": 1,
            "live_previews_enable": service().previews_enabled,
            "show_progress_every_n_steps": 1,
        })  # fmt: skip

    @blp.arguments(OptionsSchema)
    @blp.response(200)
    def post(self, options):
        """Accepted and ignored (answers null, as A1111): there is one model, and nothing else to set.

        Open WebUI posts back the whole dict it read; SillyTavern posts `sd_model_checkpoint` alone. Another
        checkpoint than the loaded one is not an error here (A1111 would refuse it): it is logged and ignored.
        """
        wanted = options.get("sd_model_checkpoint")
        if wanted and wanted not in _names_of_model():
            log.info("options: sd_model_checkpoint %r ignored; this server runs %s", wanted, _model_item()["title"])
        return _json_null()


# -- generating ------------------------------------------------------------------------------------------


@blp.route("/txt2img")
class Txt2Img(MethodView):
    @blp.arguments(Txt2ImgSchema, error_status_code=422)
    @blp.response(200)
    @blp.alt_response(422, description="Invalid parameters; the message names the field.")
    @blp.alt_response(429, description="The queue is full.")
    @blp.alt_response(500, description="Generation failed.")
    @blp.alt_response(503, description="The engine is unavailable, or too many blocking calls are open.")
    def post(self, body: dict):
        """Generate batch_size × n_iter images; blocks until they are done, answers base64 PNGs and their info."""
        side = service().limits.clamp_side(DEFAULT_SIDE)
        body = {**body, "width": body["width"] or side, "height": body["height"] or side}
        count = body["batch_size"] * body["n_iter"]
        require_count(count)
        base_seed = body["seed"]
        if base_seed in (None, -1):
            base_seed = rules.random_seed()
        elif problem := rules.range_problem("seed", base_seed, service().limits):
            raise InvalidRequest({"seed": [problem]})  # judged before the batch's seeds wrap around
        requests = [
            GenerationRequest(
                prompt=body["prompt"],
                seed=(base_seed + index) % (MAX_SEED + 1),
                width=body["width"],
                height=body["height"],
                steps=body["steps"],
                guidance=body["cfg_scale"],
                negative_prompt=body["negative_prompt"] or None,
                format=ImageFormat.PNG,
            )
            for index in range(count)
        ]
        tasks = generate_and_wait(requests)
        failed = [task for task in tasks if task.status is TaskStatus.FAILED]
        if failed:
            return a1111_error(500, f"Image generation failed: {failed[0].error}", "GenerationFailed")
        # Interrupted or skipped images are left out, as A1111 returns what a batch had made when stopped.
        done = [task for task in tasks if task.status is TaskStatus.DONE]
        images = []
        for task in done:
            data, _ = service().image(task.id, delete=True)
            images.append(base64.b64encode(data).decode("ascii"))
        return jsonify({
            "images": images if body["send_images"] else [],
            "parameters": body,  # the request as A1111 echoes it (seed -1 stays -1; info has the seeds used)
            "info": json.dumps(_info(done or tasks, body)),
        })  # fmt: skip


def _info(tasks: list[Task], body: dict) -> dict:
    """A1111's "info": the generation parameters actually used, with one seed per image."""
    model = _model_item()
    params = tasks[0].params
    version = f"mflux-server {__version__}"
    seeds = [task.params.seed for task in tasks]
    negative = params.negative_prompt or ""

    def infotext(seed: int) -> str:
        lines = [params.prompt]
        if negative:
            lines.append(f"Negative prompt: {negative}")
        lines.append(
            f"Steps: {params.steps}, Sampler: {SAMPLER}, CFG scale: {params.guidance}, Seed: {seed}, "
            f"Size: {params.width}x{params.height}, Model hash: {model['hash']}, Model: {model['model_name']}, "
            f"Version: {version}"
        )
        return "\n".join(lines)

    return {
        "prompt": params.prompt,
        "all_prompts": [params.prompt] * len(tasks),
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * len(tasks),
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": 0,
        "all_subseeds": [0] * len(tasks),
        "subseed_strength": 0,
        "width": params.width,
        "height": params.height,
        "sampler_name": SAMPLER,
        "cfg_scale": params.guidance,
        "steps": params.steps,
        "batch_size": body["batch_size"],
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": model["model_name"],
        "sd_model_hash": model["hash"],
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": body.get("denoising_strength"),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": [infotext(seed) for seed in seeds],
        "styles": body.get("styles") or [],
        "job_timestamp": _timestamp(tasks[0].submitted_at),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": version,
    }


def _timestamp(unix: float) -> str:
    return datetime.fromtimestamp(unix).strftime("%Y%m%d%H%M%S")


# -- following and stopping the caller's tasks -------------------------------------------------------------


def _my_tasks() -> list[TaskView]:
    """The caller's running and waiting tasks, running first."""
    me = client_id()
    views, _ = service().listed((TaskStatus.RUNNING, TaskStatus.WAITING))
    return [view for view in views if view.task.client == me]


@blp.route("/progress")
class Progress(MethodView):
    @blp.arguments(ProgressArgsSchema, location="query")
    @blp.response(200)
    def get(self, args):
        """Progress of the caller's images: step of the running one, seconds until all are done, its preview."""
        mine = _my_tasks()
        running = next((view for view in mine if view.task.status is TaskStatus.RUNNING), None)
        step, steps = (running.progress.step, running.progress.steps) if running and running.progress else (0, 0)
        current_image = None
        if running is not None and not args["skip_current_image"]:
            current_image = _preview_png(running.task.id)
        if running is not None:
            more = f", {len(mine) - 1} more queued" if len(mine) > 1 else ""
            textinfo = f"Generating: step {step} of {steps}{more}"
        elif mine:
            textinfo = f"Waiting in the queue: {mine[0].tasks_ahead} task(s) ahead"
        else:
            textinfo = None
        return jsonify({
            "progress": round(step / steps, 4) if steps else 0.0,
            "eta_relative": round(max((view.wait_remaining for view in mine), default=0.0), 3),
            "state": {
                "skipped": False,
                "interrupted": False,
                "stopping_generation": False,
                "job": "txt2img" if mine else "",
                "job_count": len(mine),
                "job_timestamp": _timestamp(mine[0].task.submitted_at) if mine else "0",
                "job_no": 0,
                "sampling_step": step,
                "sampling_steps": steps,
            },
            "current_image": current_image,
            "textinfo": textinfo,
        })  # fmt: skip


def _preview_png(task_id: str) -> str | None:
    jpeg = service().preview(task_id)
    if jpeg is None:
        return None
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as image:
        image.save(buffer, format="PNG")  # A1111 clients show it as a PNG data URL
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@blp.route("/interrupt")
class Interrupt(MethodView):
    @blp.response(200)
    def post(self):
        """Stop the caller's running image and drop its waiting ones (SillyTavern sends it when a user aborts)."""
        for view in _my_tasks():
            service().cancel(view.task.id)
        return jsonify({})


@blp.route("/skip")
class Skip(MethodView):
    @blp.response(200)
    def post(self):
        """Stop the caller's running image; the rest of its batch goes on."""
        for view in _my_tasks():
            if view.task.status is TaskStatus.RUNNING:
                service().cancel(view.task.id)
        return jsonify({})


# -- lists that clients read on connect; nothing in them changes what is generated ----------------------------

STATIC_ANSWERS = {
    "samplers": ("Samplers: clients may name any; the model always uses its own.",
                 [{"name": SAMPLER, "aliases": ["euler", "k_euler"], "options": {}}]),
    "schedulers": ("Schedulers: accepted and ignored.",
                   [{"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1.0,
                     "need_inner_model": False}]),
    "upscalers": ("Upscalers: none (A1111 lists 'None' first; clients rely on it).",
                  [{"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4}]),
    "latent-upscale-modes": ("Latent upscale modes: none (no hires fix).", []),
    "sd-vae": ("VAEs: the model's own only.", []),
    "sd-modules": ("Forge's module list: empty.", []),
    "loras": ("LoRAs chosen per request: none (LoRAs are set when the server starts).", []),
    "prompt-styles": ("Prompt styles: none.", []),
    "embeddings": ("Textual inversion embeddings: none.", {"loaded": {}, "skipped": {}}),
}  # fmt: skip


def _static_view(name: str, doc: str, value: object):
    def view():
        return jsonify(value)

    view.__name__ = view.__qualname__ = f"static_{name.replace('-', '_')}"
    view.__doc__ = doc
    return view


for _name, (_doc, _value) in STATIC_ANSWERS.items():
    blp.route(f"/{_name}", methods=["GET"])(blp.response(200)(_static_view(_name, _doc, _value)))


@blp.route("/refresh-checkpoints", methods=["POST"])
@blp.response(200)
def refresh_checkpoints():
    """Nothing to rescan: the model is fixed when the server starts."""
    return _json_null()


# -- errors in A1111's shape -----------------------------------------------------------------------------


@blp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    """Errors raised through flask-smorest (webargs' validation, abort) in A1111's shape."""
    data = getattr(error, "data", None) or {}
    messages = data.get("errors") or data.get("messages")
    message = describe_validation_errors(messages) if isinstance(messages, dict) else None
    message = message or data.get("message") or error.description or error.name
    response = a1111_error(error.code or 500, message, type(error).__name__)
    response.headers.update(data.get("headers") or {})
    return response
