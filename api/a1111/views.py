"""/sdapi/v1: enough of the AUTOMATIC1111 web UI's API for chat programs' A1111 integrations (Open WebUI,
SillyTavern) to connect, list the model, generate and follow progress. Their images join the shared queue.

Differences from A1111, by design:
- sd-models lists every model the server offers; options' sd_model_checkpoint switches the default model
  (answering once it is loaded), override_settings.sd_model_checkpoint picks one per request.
- Samplers, schedulers, hires fix, styles and scripts are accepted and ignored. `<lora:name:scale>` in a
  prompt picks a LoRA of the server's library, as in A1111. Upscaling (extra-single-image) runs an upscale
  model the server offers. Endpoints it does not implement answer 501 in A1111's error shape.
- img2img and inpainting take A1111's fields; masked content (inpainting_fill) is prepared in pixels, not
  latents; the area outside the mask is the input picture, exactly.
- `progress`, `interrupt` and `skip` concern the caller's own tasks (told apart by their named API key, else by
  address, as for queue limits): one client can neither watch nor stop another's images.
- txt2img blocks until its images are done; if the client hangs up meanwhile, its tasks are cancelled.
Errors have A1111's shape (api/a1111/errors.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from dataclasses import replace
from datetime import datetime

from flask import Response, jsonify, request
from flask.views import MethodView
from PIL import Image, UnidentifiedImageError
from werkzeug.exceptions import HTTPException

from api.a1111.errors import A1111ErrorSchema, a1111_error
from api.a1111.interrupted import interrupted
from api.a1111.schemas import ExtraSingleImageSchema, Img2ImgSchema, OptionsSchema, ProgressArgsSchema, Txt2ImgSchema
from api.bodies import takes_images
from api.context import caller, service
from api.errors import describe_validation_errors
from api.slots import generate_and_wait, held_requests, require_count
from api.smorest import ImitationBlueprint
from core import __version__, rules
from core.errors import InvalidRequest
from core.models import ModelInfo, ModelKind
from core.rules import MAX_SEED
from core.submissions import GenerationRequest, LoraRequest, MaskedContent, MaskMeaning, MaskRequest, Resize
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


def _model_item(model: ModelInfo) -> dict:
    sha256 = hashlib.sha256(f"{model.engine}:{model.name}".encode()).hexdigest()
    return {
        "title": f"{model.name} [{sha256[:10]}]",
        "model_name": model.name,
        "hash": sha256[:10],
        "sha256": sha256,
        "filename": model.name,
        "config": None,
    }


def checkpoint_names(tasks, from_text_only: bool = False) -> list[str]:
    """Every name an offered model answers to as a checkpoint: title, name, hash, sha256 and aliases
    (`from_text_only`: of the models that need no input image, for txt2img)."""
    names = []
    for listed in tasks.models():
        if listed.offered and not (from_text_only and listed.info.needs_image):
            item = _model_item(listed.info)
            names += [item["title"], item["hash"], item["sha256"], *listed.info.spellings]
    return names


def _checkpoint(name: str) -> ModelInfo | None:
    """The offered model an A1111 checkpoint name means: its title, name, hash, sha256 or an alias."""
    tasks = service()
    for listed in tasks.models():
        if listed.offered and name in _model_item(listed.info).values():
            return listed.info
    return tasks.find_model(name.split(" [")[0])


@blp.route("/sd-models")
class SdModels(MethodView):
    @blp.response(200)
    def get(self):
        """Every model this server offers, as A1111 lists checkpoints (title, model_name, hash, sha256, …)."""
        return jsonify([_model_item(m.info) for m in service().models() if m.offered])


@blp.route("/options")
class Options(MethodView):
    @blp.response(200)
    def get(self):
        """The options clients read: the checkpoint above all (Open WebUI and SillyTavern check it on connect)."""
        item = _model_item(service().default_model)
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
    @blp.alt_response(422, description="An sd_model_checkpoint this server does not offer.")
    def post(self, options):
        """`sd_model_checkpoint` switches the default model, as in A1111: the answer (null) comes once it is loaded.

        Open WebUI posts back the whole dict it read; SillyTavern posts `sd_model_checkpoint` alone. The other
        options mean nothing here and are ignored."""
        wanted = options.get("sd_model_checkpoint")
        if wanted:
            model = _checkpoint(wanted)
            if model is None:
                raise InvalidRequest({"sd_model_checkpoint": [_unknown_checkpoint(wanted)]})
            if model.name != service().default_variant.model:
                with held_requests().hold():
                    service().load_model(model.name, caller=caller())
        return _json_null()


def _unknown_checkpoint(name: str) -> str:
    offered = ", ".join(m.info.name for m in service().models() if m.offered)
    return f"No model {name!r} here; this server offers: {offered} (GET /sdapi/v1/sd-models)."


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
        """Generate batch_size × n_iter images; blocks until they are done, answers base64 PNGs and their info.
        Interrupted (`/interrupt`, `/skip`), the answer has the images made and the one stopped, as it stood."""
        body = _sized(body)
        model = _requested_checkpoint(body.get("override_settings") or {})
        requests = [_request(body, model, seed) for seed in _seeds(body, body["batch_size"] * body["n_iter"])]
        return _answer(requests, body, body)


@blp.route("/img2img")
@takes_images
class Img2Img(MethodView):
    @blp.arguments(Img2ImgSchema, error_status_code=422)
    @blp.response(200)
    @blp.alt_response(413, description="The images are larger than this server takes.")
    @blp.alt_response(422, description="Invalid parameters or images; the message names the field.")
    @blp.alt_response(429, description="The queue is full.")
    @blp.alt_response(500, description="Generation failed.")
    @blp.alt_response(503, description="The engine is unavailable, or too many blocking calls are open.")
    def post(self, body: dict):
        """Image-to-image and inpainting, as A1111's: init_images (one for the batch, or one per image; an edit
        model reads them all as references), denoising_strength, mask (white repaints), mask_blur,
        inpainting_fill, inpaint_full_res (+ padding), inpainting_mask_invert, resize_mode. Blocks."""
        body = _sized(body, keep_image_size=True)
        model_name = _requested_checkpoint(body.get("override_settings") or {})
        model = service().find_model(model_name) if model_name else service().default_model
        images = body["init_images"]
        per_image = [tuple(images)] if model.kind is ModelKind.EDIT else [(image,) for image in images]
        batch = body["batch_size"]
        if len(per_image) > batch:
            raise InvalidRequest({"init_images": [f"Brings {len(images)} images for a batch of {batch}: send at "
                                                  "most one per image of the batch."]})  # fmt: skip
        if len(per_image) > 1:
            batch = len(per_image)  # as A1111: k images make a batch of k
        mask = None
        if body["mask"] is not None:
            blur = body["mask_blur"] if body["mask_blur"] is not None else body["mask_blur_x"]
            padding = body["inpaint_full_res_padding"] if body["inpaint_full_res"] else None
            mask = MaskRequest(
                body["mask"],
                MaskMeaning.WHITE,
                invert=bool(body["inpainting_mask_invert"]),
                blur=blur or 0,
                content=MaskedContent(body["inpainting_fill"]),
                crop_padding=padding,
            )
        strength = None
        if model.kind is ModelKind.TEXT_TO_IMAGE and body["denoising_strength"] is not None:
            strength = 1.0 - body["denoising_strength"]
        resize = Resize(body["resize_mode"]) if body["resize_mode"] in (0, 1, 2) else Resize.STRETCH
        seeds = _seeds(body, batch * body["n_iter"])
        requests = [
            replace(_request(body, model_name, seed), init_images=per_image[index % len(per_image)], mask=mask,
                    image_strength=strength, resize=resize)
            for index, seed in enumerate(seeds)
        ]  # fmt: skip
        sent = request.get_json(silent=True) or {}
        echoed = {**body, "batch_size": batch, "init_images": None, "mask": None}
        if body["include_init_images"]:  # echoed exactly as sent, as A1111 does
            echoed |= {"init_images": sent.get("init_images"), "mask": sent.get("mask")}
        return _answer(requests, body, echoed)


@blp.route("/extra-single-image")
@takes_images
class ExtraSingleImage(MethodView):
    @blp.arguments(ExtraSingleImageSchema, error_status_code=422)
    @blp.response(200)
    @blp.alt_response(501, description="This server offers no upscale model.")
    def post(self, body: dict):
        """Upscale one image with an upscale model this server offers (SeedVR2; the demo's demo-upscale), as a
        task like any other; A1111's answer: {html_info, image}."""
        upscalers = _upscalers()
        if not upscalers:
            return a1111_error(501, "This server offers no upscale model: start it with --models seedvr2-3b (or "
                               "another upscale model, GET /api/ls?all=true).", "NotImplemented")  # fmt: skip
        wanted = body.get("upscaler_1")
        model = next((m for m in upscalers if wanted in m.spellings), upscalers[0])
        width = height = None
        if body["resize_mode"] == 1 and body["upscaling_resize_w"] and body["upscaling_resize_h"]:
            width, height = body["upscaling_resize_w"], body["upscaling_resize_h"]
        else:
            try:  # only its header: the service checks the image whole, and says what is wrong with it
                with Image.open(io.BytesIO(body["image"])) as probe:
                    width, height = (round(side * body["upscaling_resize"]) for side in probe.size)
            except (UnidentifiedImageError, OSError, ValueError):
                pass
        generation = GenerationRequest(prompt="upscale", model=model.name, width=width, height=height,
                                       format=ImageFormat.PNG, init_images=(body["image"],))  # fmt: skip
        (task,) = generate_and_wait([generation])
        if task.status is not TaskStatus.DONE:
            return a1111_error(500, f"Upscaling did not finish: {task.error or task.status.value}", "UpscaleFailed")
        data, _ = service().image(task.id, delete=True)
        return jsonify({"html_info": f"<p>Upscaled by {model.name} to {task.params.width}x{task.params.height}</p>",
                        "image": base64.b64encode(data).decode("ascii")})  # fmt: skip


def _upscalers() -> list[ModelInfo]:
    return [m.info for m in service().models() if m.offered and m.info.kind is ModelKind.UPSCALE]


def _sized(body: dict, keep_image_size: bool = False) -> dict:
    """Width and height as A1111 defaults them (512; an img2img keeps its image's size if none is sent)."""
    side = None if keep_image_size else service().limits.clamp_side(DEFAULT_SIDE)
    return {**body, "width": body["width"] or side, "height": body["height"] or side}


def _seeds(body: dict, count: int) -> list[int]:
    """Seed, seed + 1, … as A1111 numbers a batch (-1: a random start)."""
    require_count(count)
    base_seed = body["seed"]
    if base_seed in (None, -1):
        base_seed = rules.random_seed()
    elif problem := rules.range_problem("seed", base_seed, service().limits):
        raise InvalidRequest({"seed": [problem]})  # judged before the batch's seeds wrap around
    return [(base_seed + index) % (MAX_SEED + 1) for index in range(count)]


LORA_TAG = re.compile(r"<lora:([^:>]+)(?::\s*([-+]?[0-9]*\.?[0-9]+))?\s*>", re.IGNORECASE)


def _without_lora_tags(prompt: str) -> tuple[str, tuple[LoraRequest, ...]]:
    """A1111's `<lora:name:scale>` prompt syntax as per-request LoRAs (the tags taken out of the prompt)."""
    loras = tuple(LoraRequest(m.group(1).strip(), float(m.group(2)) if m.group(2) else 1.0)
                  for m in LORA_TAG.finditer(prompt))  # fmt: skip
    return (LORA_TAG.sub("", prompt).strip() if loras else prompt), loras


def _request(body: dict, model: str | None, seed: int) -> GenerationRequest:
    prompt, loras = _without_lora_tags(body["prompt"])
    return GenerationRequest(
        prompt=prompt,
        loras=loras,
        model=model,
        seed=seed,
        width=body["width"],
        height=body["height"],
        steps=body["steps"],
        guidance=body["cfg_scale"],
        negative_prompt=body["negative_prompt"] or None,
        format=ImageFormat.PNG,
        callback_url=body.get("callback_url"),
    )


def _answer(requests: list[GenerationRequest], body: dict, echoed: dict) -> Response:
    tasks = generate_and_wait(requests)
    failed = [task for task in tasks if task.status is TaskStatus.FAILED]
    if failed:
        return a1111_error(500, f"Image generation failed: {failed[0].error}", "GenerationFailed")
    images, made = [], []
    for task in tasks:
        if task.status is TaskStatus.DONE:
            data, _ = service().image(task.id, delete=True)
        elif (data := interrupted().pop(task.id)) is None:
            continue  # cancelled before it ran (or by someone else): A1111 has nothing to show for it either
        images.append(base64.b64encode(data).decode("ascii"))
        made.append(task)
    return jsonify({
        "images": images if body["send_images"] else [],
        "parameters": echoed,  # the request as A1111 echoes it (seed -1 stays -1; info has the seeds used)
        "info": json.dumps(_info(made or tasks, body)),
    })  # fmt: skip


def _requested_checkpoint(override: dict) -> str | None:
    """`override_settings.sd_model_checkpoint`: the model for this request only (A1111's per-request switch)."""
    wanted = override.get("sd_model_checkpoint")
    if not wanted:
        return None
    model = _checkpoint(str(wanted))
    if model is None:
        raise InvalidRequest({"override_settings.sd_model_checkpoint": [_unknown_checkpoint(str(wanted))]})
    return model.name


def _info(tasks: list[Task], body: dict) -> dict:
    """A1111's "info": the generation parameters actually used, with one seed per image."""
    model = _model_item(service().find_model(tasks[0].variant.model) or service().default_model)
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
    return service().own_tasks(caller(), (TaskStatus.RUNNING, TaskStatus.WAITING))


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
    jpeg = service().preview(task_id, caller())
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
        """Stop the caller's running image and drop its waiting ones (SillyTavern sends it when a user aborts).
        The stopped image comes back to the blocking call as it stood, as A1111 returns it."""
        for view in _my_tasks():
            _keep_as_it_stands(view)
            service().cancel(view.task.id, caller())
        return jsonify({})


@blp.route("/skip")
class Skip(MethodView):
    @blp.response(200)
    def post(self):
        """Stop the caller's running image (it comes back as it stood); the rest of its batch goes on."""
        for view in _my_tasks():
            if view.task.status is TaskStatus.RUNNING:
                _keep_as_it_stands(view)
                service().cancel(view.task.id, caller())
        return _json_null()


def _keep_as_it_stands(view: TaskView) -> None:
    """A running image stopped by the client: its latest preview, at the image's size, for the blocking call
    to answer with (A1111 decodes the stopped batch's latents and returns them)."""
    if view.task.status is not TaskStatus.RUNNING:
        return
    jpeg = service().preview(view.task.id, caller())
    if jpeg is None:
        return
    params, buffer = view.task.params, io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as preview:
        preview.convert("RGB").resize((params.width, params.height), Image.Resampling.BICUBIC).save(buffer, "PNG")
    interrupted().keep(view.task.id, buffer.getvalue())


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
    "prompt-styles": ("Prompt styles: none.", []),
    "embeddings": ("Textual inversion embeddings: none.", {"loaded": {}, "skipped": {}}),
    "scripts": ("Scripts: none (webuiapi reads this when it connects).", {"txt2img": [], "img2img": []}),
    "script-info": ("Scripts: none.", []),
    "extensions": ("Extensions: none.", []),
    "face-restorers": ("Face restorers: none.", []),
    "hypernetworks": ("Hypernetworks: none.", []),
    "realesrgan-models": ("RealESRGAN models: none (upscaling: extra-single-image, with an upscale model).", []),
}  # fmt: skip

# A1111 endpoints this server does not implement: a JSON 501 that says so (a 404 reads as a broken server).
UNSUPPORTED = {
    "png-info": "POST", "interrogate": "POST", "extra-batch-images": "POST", "cmd-flags": "GET",
    "refresh-vae": "POST", "refresh-embeddings": "POST", "refresh-loras": "POST", "create/embedding": "POST",
    "create/hypernetwork": "POST", "train/embedding": "POST", "train/hypernetwork": "POST", "memory": "GET",
    "unload-checkpoint": "POST", "reload-checkpoint": "POST", "server-kill": "POST", "server-restart": "POST",
    "server-stop": "POST",
}  # fmt: skip


def _static_view(name: str, doc: str, value: object):
    def view():
        return jsonify(value)

    view.__name__ = view.__qualname__ = f"static_{name.replace('-', '_')}"
    view.__doc__ = doc
    return view


for _name, (_doc, _value) in STATIC_ANSWERS.items():
    blp.route(f"/{_name}", methods=["GET"])(blp.response(200)(_static_view(_name, _doc, _value)))


def _unsupported_view(name: str, method: str):
    def view():
        message = f"{method} /sdapi/v1/{name} is not supported by mflux-server."
        return a1111_error(501, message, "NotImplementedError")

    view.__name__ = view.__qualname__ = f"unsupported_{name.replace('-', '_').replace('/', '_')}"
    view.__doc__ = "Not supported by this server: 501, in A1111's error shape."
    return view


for _name, _method in UNSUPPORTED.items():
    blp.route(f"/{_name}", methods=[_method])(blp.response(501)(_unsupported_view(_name, _method)))


@blp.route("/loras", methods=["GET"])
@blp.response(200)
def loras():
    """The server's LoRA library, as A1111's Lora extension lists it; use one with `<lora:name:scale>` in the
    prompt, as in A1111."""
    return jsonify([{"name": name, "alias": name, "path": name, "metadata": {}} for name in service().lora_names()])


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
