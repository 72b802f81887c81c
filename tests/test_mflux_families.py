"""Every model family of the catalog on its REAL mflux `generate_image` loop, through the server's own adapter
(worker/engines/mflux/model.py: the arguments the family builds, mflux's callback registry, the progress bridge,
previews, cancellation), with no weights: each family's real pipeline class and real transformer class at zero
layers with random weights, and stand-ins only for tokenizers, text encoders and VAEs (tests/support/tiny_mflux.py).

Checked per model: the loop reports every step that runs, previews render, the image has the size the server
promised, a cancel at the first step stops the loop there, and img2img runs only part of the schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "mflux", reason="mflux is not installed; install it with `.venv/bin/python scripts/install_mflux.py`"
)

import mlx.core as mx

from core.models import ModelKind, Variant
from core.rules import Limits, to_params
from core.submissions import GenerationRequest
from tests.support import tiny_mflux
from worker.engines.base import TaskCancelled
from worker.engines.mflux.catalog import model_info, served
from worker.engines.mflux.model import MfluxModel

pytestmark = pytest.mark.mflux

# The tiny builds, by catalog name: the same class and registry config as the real model (the builder's key).
TINY = {
    "schnell": "flux1-schnell", "dev": "flux1-dev", "krea-dev": "flux1-krea-dev", "dev-kontext": "kontext",
    "dev-fill": "fill", "flux2-klein-4b": "flux2-klein-4b", "flux2-klein-9b": "flux2-klein-9b",
    "flux2-klein-base-4b": "flux2-klein-base-4b", "flux2-klein-base-9b": "flux2-klein-base-9b",
    "flux2-klein-4b-edit": "flux2-klein-edit", "flux2-klein-9b-kv-edit": "flux2-klein-9b-kv-edit",
    "flux3-image-klein": "flux3-klein", "flux3-image-klein-base": "flux3-klein-base",
    "flux3-image-klein-edit": "flux3-klein-edit", "z-image-turbo": "z-image-turbo", "z-image": "z-image",
    "qwen-image": "qwen-image", "qwen-image-edit": "qwen-image-edit", "qwen-image-edit-2511": "qwen-image-edit-2511",
    "qwen-image-2.1": "qwen-image-2.1", "qwen-image-2.1-turbo": "qwen-image-2.1-turbo",
    "qwen-image-2.1-edit": "qwen-image-2.1-edit", "krea-2": "krea-2", "krea-2-raw": "krea-2-raw", "fibo": "fibo",
    "fibo-lite": "fibo-lite", "fibo-edit": "fibo-edit", "fibo-edit-rmbg": "fibo-edit-rmbg", "fibo2": "fibo2",
    "fibo2-edit-turbo": "fibo2-edit", "ernie-image": "ernie-image", "ernie-image-turbo": "ernie-image-turbo",
    "ideogram-4-fp8": "ideogram-4", "iris-3b": "iris-3b", "iris-3b-base": "iris-3b-base", "lens-turbo": "lens-turbo",
    "ming-image-design": "ming-image-design", "moss-image-sft": "moss-image-sft", "moss-image-base": "moss-image-base",
    "boogu-image-turbo": "boogu-image-turbo", "anima-turbo": "anima-turbo", "anima-aesthetic": "anima-aesthetic",
    "anima-base": "anima-base", "seedvr2-3b": "seedvr2-3b", "seedvr2-7b": "seedvr2-7b",
}  # fmt: skip
SIZE = {"ideogram-4-fp8": (256, 256), "qwen-image-2.1-edit": (64, 64)}  # each family's smallest size
STEPS = 3


@pytest.fixture(scope="module", autouse=True)
def no_compile():
    """MLX compiles CPU kernels on first use (seconds per family on a cold cache); the loop is the same without."""
    mx.disable_compile()
    yield
    mx.enable_compile()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for name, (w, h) in {"init.png": (64, 48), "square.png": (64, 64), "small.png": (32, 24)}.items():
        Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(folder / name)
    mask = np.zeros((48, 64), dtype="uint8")
    mask[12:36, 16:48] = 255
    Image.fromarray(mask).convert("RGB").save(folder / "mask.png")
    return folder


@dataclass
class RecordingProgress:
    cancel_at_step: int | None = None
    started: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    previews: list[Image.Image] = field(default_factory=list)
    cancelled: bool = False

    def loop_started(self, steps: int) -> None:
        self.started.append(steps)

    def step_done(self, step: int, preview=None) -> None:
        self.steps.append(step)
        if preview is not None:
            self.previews.append(preview())
        if step == self.cancel_at_step:
            self.cancelled = True


def adapter(name: str) -> MfluxModel:
    family, member, entry = served()[name]
    info = model_info(name, family, member, entry)
    return MfluxModel(tiny_mflux.build_tiny(TINY[name]), info, Variant(name), family, member)


def params_for(model: MfluxModel, inputs, *, img2img: bool = False):
    info = model.info
    width, height = SIZE.get(info.name, (64, 48))
    prompt = tiny_mflux.PROMPTS.get(TINY[info.name], tiny_mflux.DEFAULT_PROMPT)
    request = GenerationRequest(prompt=prompt, width=width, height=height, steps=STEPS + img2img, seed=7)
    params = to_params(request, Limits(), info)
    reference = inputs / ("square.png" if info.name == "qwen-image-2.1-edit" else "init.png")
    if info.kind is ModelKind.UPSCALE:
        params = dataclasses.replace(params, init_image=str(inputs / "small.png"))
    elif info.kind is ModelKind.INPAINT:
        params = dataclasses.replace(params, init_image=str(inputs / "init.png"), mask=str(inputs / "mask.png"))
    elif info.kind is ModelKind.EDIT:
        params = dataclasses.replace(params, references=(str(reference),))
    if img2img:
        params = dataclasses.replace(params, init_image=str(inputs / "init.png"), image_strength=0.5)
    return params


def test_every_family_and_model_is_exercised():
    families = {served()[name][0].name for name in TINY}
    assert families == {family.name for family, _, _ in served().values()}
    assert set(TINY) <= set(served())
    assert len(TINY) >= 45


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_real_loop_reports_every_step_previews_and_makes_the_promised_size(name, inputs):
    model = adapter(name)
    params = params_for(model, inputs)
    progress = RecordingProgress()
    made = model.generate(params, progress)
    assert progress.started and progress.steps == list(range(1, len(progress.steps) + 1))
    expected = 1 if model.info.steps_fixed and model.info.kind is ModelKind.UPSCALE else None
    if model.info.steps_fixed:
        assert len(progress.steps) >= 1
    else:
        assert len(progress.steps) == params.steps_run, "steps reported are not the steps that ran"
    assert expected in (None, len(progress.steps))
    if model.family.preview.layout != "none":
        assert progress.previews and all(p.mode == "RGB" and max(p.size) <= 128 for p in progress.previews)
    assert isinstance(made.image, Image.Image)
    assert made.image.size == (params.width, params.height)


@pytest.mark.parametrize("name", sorted(n for n in TINY if not served()[n][1].steps_fixed))
def test_a_cancel_at_the_first_step_stops_the_loop_there(name, inputs):
    model = adapter(name)
    progress = RecordingProgress(cancel_at_step=1)
    with pytest.raises(TaskCancelled):
        model.generate(params_for(model, inputs), progress)
    assert progress.steps == [1]
    made = model.generate(params_for(model, inputs), RecordingProgress())  # the model is reusable afterwards
    assert made.image.size[0] > 0


@pytest.mark.parametrize("name", sorted(n for n in TINY if served()[n][0].img2img))
def test_img2img_runs_only_the_rest_of_the_schedule(name, inputs):
    model = adapter(name)
    params = params_for(model, inputs, img2img=True)
    assert params.steps_run < params.steps
    progress = RecordingProgress()
    made = model.generate(params, progress)
    assert progress.started == [params.steps_run]
    assert len(progress.steps) == params.steps_run
    assert made.image.size == (params.width, params.height)


def test_the_prompt_cache_is_seen_and_stays_bounded(inputs):
    model = adapter("schnell")
    real = tiny_mflux._flux1_cache_entry  # mflux's own lookup finds what the real encoder would have stored
    cache = {tiny_mflux.DEFAULT_PROMPT: real(tiny_mflux.DEFAULT_PROMPT)}
    model.model.prompt_cache = cache
    params = params_for(model, inputs)
    assert model._prompt_cached(dataclasses.replace(params, prompt="never seen")) is False
    assert model.generate(params, RecordingProgress()).prompt_cached is True
    for index in range(12):
        cache[f"prompt {index}"] = real(f"prompt {index}")
    model._trim_prompt_cache()
    assert len(cache) <= 8


EDITS = sorted(n for n in TINY if served()[n][0].kind is ModelKind.EDIT)


@pytest.mark.parametrize("name", EDITS)
def test_edit_models_take_several_references_and_their_masks(name, inputs):
    """As their CLIs pass them: several `image_paths` where the model reads several, the mask (`mask_image`,
    `mask_path`) where it takes one — and mflux, on its real loop, accepts them (it checks a mask's size against
    its image's, and FIBO 2 takes a mask only with one image)."""
    model = adapter(name)
    seen: list[dict] = []
    real = model.model.generate_image
    model.model.generate_image = lambda **kwargs: seen.append(kwargs) or real(**kwargs)
    params = params_for(model, inputs)
    count = min(model.info.max_references, 2)
    several = dataclasses.replace(params, references=params.references * count)
    made = model.generate(several, RecordingProgress())
    assert made.image.size == (params.width, params.height)
    paths = [value for key, value in seen[-1].items() if key in ("image_path", "image_paths")]
    assert paths and len(paths[0] if isinstance(paths[0], list) else [paths[0]]) == (count if count > 1 else 1)
    if model.info.takes_mask:
        mask = inputs / f"mask-{params.width}x{params.height}.png"  # the left half repainted
        halves = np.zeros((params.height, params.width), dtype="uint8")
        halves[:, : params.width // 2] = 255
        Image.fromarray(halves).convert("RGB").save(mask)
        masked = model.generate(dataclasses.replace(params, mask=str(mask)), RecordingProgress())
        assert masked.image.size == (params.width, params.height)
        assert str(mask) in seen[-1].values()  # under the name its CLI gives it (family modules)
