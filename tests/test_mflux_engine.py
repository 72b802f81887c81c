"""The mflux engine against the real, installed mflux: the model table, the callback bridge, loading.

No weights exist here (and none may be downloaded), so the denoising-loop tests build a real `Flux1` without
weights: mflux's own `generate_image`, `Config`, scheduler, latent creator, prompt-cache lookup, callback
registry, unpacking and image conversion all run; the FLUX transformer is mflux's real `Transformer` with
zero blocks (its embedders, rotary embeddings and output layer are real, with random weights), the text
encoders are skipped by a pre-filled prompt cache, and the VAE is a tiny stand-in (the real one takes ~20 s
to decode even 64x64 on this CPU).
"""

from __future__ import annotations

import inspect
import socket
from argparse import Namespace
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip(
    "mflux", reason="mflux is not installed; install it with `.venv/bin/python scripts/install_mflux.py`"
)

import mlx.core as mx
from mflux.callbacks.callback_registry import CallbackRegistry
from mflux.cli.defaults import defaults
from mflux.models.common.config.model_config import AVAILABLE_MODELS, ModelConfig
from mflux.models.flux.latent_creator.flux_latent_creator import FluxLatentCreator
from mflux.models.flux.model.flux_transformer.transformer import Transformer
from mflux.models.flux.variants.txt2img.flux import Flux1
from mflux.models.flux2.latent_creator.flux2_latent_creator import Flux2LatentCreator
from mflux.models.krea2.cli import krea2_generate
from mflux.models.krea2.latent_creator.krea2_latent_creator import Krea2LatentCreator
from mflux.models.qwen.cli.qwen_image_generate import QwenImageCommand
from mflux.models.qwen.latent_creator.qwen_latent_creator import QwenLatentCreator
from mflux.models.z_image.latent_creator.z_image_latent_creator import ZImageLatentCreator
from mflux.utils.exceptions import StopImageGenerationException
from mlx import nn
from PIL import Image

from core.engines import EngineConfig
from core.tasks import GenerationParams
from worker.engines import mflux_engine
from worker.engines.base import EngineLoadError, TaskCancelled, describe_engine
from worker.engines.mflux_engine import LATENT_RGB_FACTORS, MfluxEngine, describe, latents_to_preview, load
from worker.engines.mflux_models import MODEL_NAMES, MODELS, ModelSpec, resolve_model

pytestmark = pytest.mark.mflux

SPEC_IDS = [spec.name for spec in MODELS]


def _class(spec: ModelSpec) -> type:
    module_name, class_name = spec.class_path.split(":")
    return getattr(__import__(module_name, fromlist=[class_name]), class_name)


# ---------------------------------------------------------------------------------------------------------
# The model table, row by row, against mflux 0.24


def test_the_table_covers_the_planned_models():
    assert set(MODEL_NAMES) == {
        "schnell",
        "dev",
        "krea-dev",
        "flux2-klein-4b",
        "flux2-klein-9b",
        "flux2-klein-base-4b",
        "flux2-klein-base-9b",
        "z-image-turbo",
        "z-image",
        "qwen-image",
        "krea-2",
    }
    assert len(set(MODEL_NAMES)) == len(MODEL_NAMES)


def test_resolve_model_takes_names_and_aliases_in_any_case():
    assert resolve_model("schnell").name == "schnell"
    assert resolve_model("Klein-4B").name == "flux2-klein-4b"
    assert resolve_model(" dev-krea ").name == "krea-dev"
    with pytest.raises(ValueError, match="flux-pro") as caught:
        resolve_model("flux-pro")
    assert all(name in str(caught.value) for name in MODEL_NAMES)


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_the_class_imports_and_is_an_mlx_module(spec):
    assert issubclass(_class(spec), nn.Module)


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_the_constructor_takes_the_keywords_load_passes(spec):
    parameters = inspect.signature(_class(spec).__init__).parameters
    assert {"quantize", "model_path", "lora_paths", "lora_scales", "model_config"} <= set(parameters)


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_generate_image_takes_the_keywords_generate_passes(spec):
    parameters = inspect.signature(_class(spec).generate_image).parameters
    assert {"seed", "prompt", "num_inference_steps", "height", "width", "guidance"} <= set(parameters)
    if spec.supports_negative_prompt:
        assert "negative_prompt" in parameters


def test_flux1_accepts_a_negative_prompt_but_never_uses_it():
    """Why the FLUX.1 rows say no: the parameter exists only in the signature."""
    source = inspect.getsource(Flux1.generate_image)
    assert source.count("negative_prompt") == 1


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_model_config_resolves_the_name_and_every_alias(spec):
    config = ModelConfig.from_name(model_name=spec.name, base_model=None)
    assert config is AVAILABLE_MODELS[spec.name]
    for alias in spec.aliases:
        assert alias in config.aliases
        assert ModelConfig.from_name(model_name=alias, base_model=None) is config


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_default_steps_are_mflux_defaults(spec):
    assert spec.default_steps == defaults.model_inference_steps(spec.name)


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_guidance_adjustability_follows_mflux(spec):
    config = AVAILABLE_MODELS[spec.name]
    if spec.class_path.endswith(":Flux2Klein"):
        # The registry says True for every klein; mflux-generate-flux2 rejects guidance other than 1.0 for
        # any model whose repo name lacks "base" (the distilled ones).
        assert spec.guidance_adjustable == ("base" in config.model_name.lower())
    elif config.supports_guidance is None:
        # Qwen-Image leaves it unset, yet QwenImage.compute_guided_noise scales by the guidance every step.
        assert "config.guidance" in inspect.getsource(_class(spec).generate_image)
        assert spec.guidance_adjustable
    else:
        assert spec.guidance_adjustable == config.supports_guidance


def _mflux_default_guidance(spec: ModelSpec) -> float | None:
    """The guidance mflux itself uses when none is given, where it states one that keeps the model working."""
    if spec.class_path.endswith(":Flux1"):
        return defaults.GUIDANCE_SCALE  # what mflux-generate passes
    if spec.name == "qwen-image":
        return QwenImageCommand._guidance(Namespace(guidance=None))
    if spec.name == "krea-2":
        return krea2_generate.DEFAULT_GUIDANCE
    if spec.class_path.endswith(":Flux2Klein") and not spec.guidance_adjustable:
        return inspect.signature(_class(spec).generate_image).parameters["guidance"].default
    if spec.name == "z-image-turbo":
        return 0.0  # ZImage.generate_image forces it for models without guidance support
    return None  # the base models: mflux's CLI default switches CFG off, so the table takes the model card's


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_default_guidance_agrees_with_mflux_where_it_states_one(spec):
    expected = _mflux_default_guidance(spec)
    if expected is None:
        assert spec.guidance_adjustable
        assert spec.default_guidance > 1.0, "a base model needs CFG on by default"
    else:
        assert spec.default_guidance == expected


# The first latents each family's own latent creator makes for a 64x48 image, in the layout the loop keeps.
INITIAL_LATENTS = {
    "Flux1": lambda: FluxLatentCreator.create_noise(1, 48, 64),
    "Flux2Klein": lambda: Flux2LatentCreator.prepare_packed_latents(seed=1, height=48, width=64, batch_size=1)[0],
    "ZImage": lambda: ZImageLatentCreator.create_noise(1, 48, 64),
    "QwenImage": lambda: QwenLatentCreator.create_noise(1, 48, 64),
    "Krea2": lambda: Krea2LatentCreator.create_noise(1, 48, 64),
}


@pytest.mark.parametrize("spec", MODELS, ids=SPEC_IDS)
def test_the_preview_projection_fits_the_model_latents(spec):
    latents = np.asarray(INITIAL_LATENTS[spec.class_path.split(":")[1]]().astype(mx.float32))
    matrix, _ = LATENT_RGB_FACTORS[spec.latent_rgb]
    channels = latents.size // ((48 // 8) * (64 // 8))
    assert channels == len(matrix), "the projection would fall back to raw channels"
    image = latents_to_preview(latents, spec.latent_layout, spec.latent_rgb, 48, 64)
    assert (image.mode, image.size) == ("RGB", (8, 6))


def test_the_projections_match_their_published_column_sums():
    """A transcription check against the sums InvokeAI's tests pin for the same matrices."""
    for name, sums in {"flux2": (-0.0122, 0.1637, 0.1435), "wan21": (0.3887, 0.8771, 1.3152)}.items():
        matrix, _ = LATENT_RGB_FACTORS[name]
        assert np.asarray(matrix).sum(axis=0) == pytest.approx(sums, abs=1e-4)


@pytest.mark.parametrize(
    ("pack", "channels", "rgb"),
    [
        (lambda spatial: FluxLatentCreator.pack_latents(spatial, 48, 64), 16, "flux1"),
        (lambda spatial: Flux2LatentCreator.pack_latents(Flux2LatentCreator.patchify_latents(spatial)), 32, "flux2"),
    ],
    ids=["flux1", "flux2"],
)
def test_unpacking_for_the_preview_inverts_mflux_packing(pack, channels, rgb):
    """Pixel (y, x) of the preview must come from latent pixel (y, x): pack with mflux, project both ways."""
    spatial = mx.random.normal((1, channels, 6, 8), key=mx.random.key(3))
    packed = np.asarray(pack(spatial))
    matrix, bias = LATENT_RGB_FACTORS[rgb]
    direct = np.asarray(spatial)[0].transpose(1, 2, 0) @ np.asarray(matrix) + np.asarray(bias)
    expected = np.clip((direct + 1) / 2, 0, 1) * 255
    preview = np.asarray(latents_to_preview(packed, "packed", rgb, 48, 64)).astype(np.float64)
    assert np.abs(preview - expected).max() <= 1.0  # float32 vs float64 rounding only


def test_a_latent_space_without_factors_shows_its_first_channels():
    latents = np.zeros((1, 16, 4, 4), dtype=np.float32)
    latents[0, 0, 0, 0] = 5.0
    pixels = np.asarray(latents_to_preview(latents, "spatial", None, 32, 32))
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[1, 1]) == (0, 0, 0)


def test_previews_stay_small_for_large_images():
    latents = np.zeros((1, 16, 2048 // 8, 1024 // 8), dtype=np.float32)
    assert max(latents_to_preview(latents, "spatial", "flux1", 2048, 1024).size) <= mflux_engine.PREVIEW_MAX_SIDE


# ---------------------------------------------------------------------------------------------------------
# describe and the checks that need no weights


def test_describe_uses_the_table_without_importing_model_code():
    info = describe_engine(EngineConfig(engine="mflux", model="schnell", quantize=8))
    assert info.name == "mflux"
    assert info.model == "schnell"
    assert info.label == "mflux schnell (8-bit)"
    assert (info.default_steps, info.default_guidance, info.guidance_adjustable) == (4, 3.5, False)
    assert info.size_step == 16
    assert info.seconds_per_step_at_1mp == resolve_model("schnell").seconds_per_step_at_1mp
    assert not info.is_demo
    assert describe(EngineConfig(model="klein-4b")).model == "flux2-klein-4b"


@pytest.mark.parametrize("bits", [7, 0, 16])
def test_unsupported_quantization_is_refused(bits):
    with pytest.raises(EngineLoadError, match=f"--quantize {bits}.*3, 4, 5, 6, 8"):
        load(EngineConfig(model="schnell", quantize=bits))


def test_lora_scales_must_match_the_paths():
    with pytest.raises(EngineLoadError, match="2 LoRA path"):
        load(EngineConfig(model="dev", lora_paths=("a.safetensors", "b.safetensors"), lora_scales=(0.5,)))
    with pytest.raises(EngineLoadError, match="without any LoRA paths"):
        load(EngineConfig(model="dev", lora_scales=(0.5,)))


def test_an_unknown_model_lists_the_valid_ones():
    with pytest.raises(EngineLoadError, match=r"schnell.*krea-2"):
        describe(EngineConfig(model="flux-pro"))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network at all, and an empty Hugging Face cache, so loading can only fail, and fast."""
    import huggingface_hub.constants
    from mflux.models.common.resolution import path_resolution

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for module in (huggingface_hub.constants, path_resolution):  # path_resolution copied it at import
        monkeypatch.setattr(module, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))

    def refuse(*args, **kwargs):
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.usefixtures("offline")
def test_loading_without_weights_says_what_is_missing_and_how_to_fix_it():
    with pytest.raises(EngineLoadError) as caught:
        load(EngineConfig(model="schnell", quantize=8))
    message = str(caught.value)
    assert "'schnell'" in message
    assert "black-forest-labs/FLUX.1-schnell" in message
    assert "--path" in message
    assert "network access" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert caught.value.__cause__ is not None


@pytest.mark.usefixtures("offline")
def test_loading_from_a_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EngineLoadError) as caught:
        load(EngineConfig(model="dev", path=str(missing)))
    message = str(caught.value)
    assert "'dev'" in message
    assert str(missing) in message
    assert "black-forest-labs/FLUX.1-dev" in message


def test_a_missing_mflux_says_how_to_install_it(monkeypatch):
    real_find_spec = mflux_engine.importlib.util.find_spec
    monkeypatch.setattr(
        mflux_engine.importlib.util, "find_spec", lambda name, *a: None if name == "mflux" else real_find_spec(name, *a)
    )
    with pytest.raises(EngineLoadError, match="not installed") as caught:
        load(EngineConfig(model="schnell"))
    assert "install_mflux.py" in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# The real denoising loop of Flux1.generate_image, on tiny latents


@dataclass
class RecordingProgress:
    """A GenerationProgress that records what the engine reports and cancels on cue."""

    cancel_at_step: int | None = None
    cancel_on_start: bool = False
    started: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    previews: list[Image.Image] = field(default_factory=list)
    cancelled: bool = False

    def loop_started(self, steps: int) -> None:
        self.started.append(steps)
        self.cancelled = self.cancelled or self.cancel_on_start

    def step_done(self, step: int, preview=None) -> None:
        self.steps.append(step)
        self.previews.append(preview())
        if step == self.cancel_at_step:
            self.cancelled = True


class TinyVAE(nn.Module):
    """Stands in for the FLUX VAE decoder: 16 latent channels to RGB in [-1, 1], 8x upsampled."""

    def __init__(self) -> None:
        super().__init__()
        self.to_rgb = nn.Linear(16, 3)
        self.decodes = 0

    def decode(self, latents: mx.array) -> mx.array:
        self.decodes += 1
        pixels = mx.repeat(mx.repeat(latents.transpose(0, 2, 3, 1), 8, axis=1), 8, axis=2)
        return mx.tanh(self.to_rgb(pixels)).transpose(0, 3, 1, 2)


PROMPT = "a lighthouse at dusk"


@pytest.fixture(scope="module")
def tiny_transformer():
    return Transformer(model_config=ModelConfig.schnell(), num_transformer_blocks=0, num_single_transformer_blocks=0)


@pytest.fixture
def tiny_flux(tiny_transformer):
    """A real Flux1 without weights: what FluxInitializer would set, with the heavy parts replaced."""
    model = Flux1.__new__(Flux1)
    nn.Module.__init__(model)
    model.model_config = ModelConfig.schnell()
    model.callbacks = CallbackRegistry()
    model.tiling_config = None
    model.bits = None
    model.lora_paths = None
    model.lora_scales = None
    # T5 + CLIP would need weights; PromptEncoder returns cached embeddings before touching them.
    model.prompt_cache = {PROMPT: (mx.random.normal((1, 8, 4096)), mx.random.normal((1, 768)))}
    model.tokenizers = {"t5": None, "clip": None}
    model.t5_text_encoder = None
    model.clip_text_encoder = None
    model.transformer = tiny_transformer
    model.vae = TinyVAE()
    return model


@pytest.fixture
def engine(tiny_flux):
    return MfluxEngine(tiny_flux, resolve_model("schnell"), describe(EngineConfig()), StopImageGenerationException)


def _params(engine: MfluxEngine, steps: int = 3, width: int = 72, height: int = 50) -> GenerationParams:
    return GenerationParams(
        prompt=PROMPT,
        seed=7,
        width=engine.info.round_size(width),
        height=engine.info.round_size(height),
        steps=steps,
        guidance=3.5,
    )


def test_the_bridge_is_registered_once_on_the_real_registry(engine, tiny_flux):
    registry = tiny_flux.callbacks
    bridge = registry.before_loop[0]
    assert registry.before_loop == registry.in_loop == registry.after_loop == [bridge]


def test_a_full_run_reports_every_step_and_returns_the_image(engine):
    progress = RecordingProgress()
    image = engine.generate(_params(engine, steps=3), progress)
    assert progress.started == [3]
    assert progress.steps == [1, 2, 3]
    assert all(p.mode == "RGB" and p.size == (64 // 8, 48 // 8) for p in progress.previews)
    assert isinstance(image, Image.Image)
    assert image.size == (64, 48)


def test_cancelling_mid_loop_stops_before_the_next_step(engine, tiny_flux):
    progress = RecordingProgress(cancel_at_step=1)
    with pytest.raises(TaskCancelled):
        engine.generate(_params(engine, steps=3), progress)
    assert progress.steps == [1]
    assert tiny_flux.vae.decodes == 0
    # The engine is reusable afterwards.
    assert engine.generate(_params(engine, steps=2), RecordingProgress()).size == (64, 48)


def test_cancelling_after_the_last_step_skips_the_decode(engine, tiny_flux):
    progress = RecordingProgress(cancel_at_step=2)
    with pytest.raises(TaskCancelled):
        engine.generate(_params(engine, steps=2), progress)
    assert progress.steps == [1, 2]
    assert tiny_flux.vae.decodes == 0


def test_cancelling_during_text_encoding_stops_before_the_loop(engine):
    progress = RecordingProgress(cancel_on_start=True)
    with pytest.raises(TaskCancelled):
        engine.generate(_params(engine), progress)
    assert progress.started == [3]
    assert progress.steps == []


def test_an_already_cancelled_task_never_starts(engine):
    progress = RecordingProgress(cancelled=True)
    with pytest.raises(TaskCancelled):
        engine.generate(_params(engine), progress)
    assert progress.started == []


# ---------------------------------------------------------------------------------------------------------
# What generate passes, with a recording stand-in model


class RecordingModel:
    """Has what MfluxEngine uses of a model: a real CallbackRegistry and mflux's generate_image signature."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.callbacks = CallbackRegistry()
        self.prompt_cache: dict[str, object] = {}
        self.calls: list[dict] = []
        self.fail_with = fail_with

    def generate_image(
        self, seed, prompt, num_inference_steps=4, height=1024, width=1024, guidance=4.0, negative_prompt=None
    ):
        self.calls.append(dict(seed=seed, prompt=prompt, guidance=guidance, negative_prompt=negative_prompt))
        self.prompt_cache[prompt] = object()
        if self.fail_with is not None:
            raise self.fail_with
        return Namespace(image=Image.new("RGB", (width, height)))


def _engine_for(model_name: str, model: RecordingModel) -> MfluxEngine:
    config = EngineConfig(model=model_name)
    return MfluxEngine(model, resolve_model(model_name), describe(config), StopImageGenerationException)


def _ask(engine: MfluxEngine, guidance: float, negative: str | None) -> dict:
    params = GenerationParams("p", 1, 64, 64, 2, guidance, negative_prompt=negative)
    engine.generate(params, RecordingProgress())
    return engine.model.calls[-1]


def test_fixed_guidance_models_always_get_their_own_guidance():
    assert _ask(_engine_for("flux2-klein-4b", RecordingModel()), 7.0, None)["guidance"] == 1.0
    assert _ask(_engine_for("dev", RecordingModel()), 7.0, None)["guidance"] == 7.0


def test_negative_prompts_reach_only_models_that_use_them():
    assert _ask(_engine_for("qwen-image", RecordingModel()), 4.0, "blurry")["negative_prompt"] == "blurry"
    assert _ask(_engine_for("dev", RecordingModel()), 4.0, "blurry")["negative_prompt"] is None
    assert _ask(_engine_for("z-image", RecordingModel()), 4.0, "")["negative_prompt"] is None


def test_a_stop_that_is_not_a_cancellation_is_not_reported_as_one():
    """mflux turns a KeyboardInterrupt into the same exception; that is a failure, not a cancel."""
    model = RecordingModel(fail_with=StopImageGenerationException("Stopping image generation at step 1/4"))
    with pytest.raises(StopImageGenerationException):
        _ask(_engine_for("dev", model), 3.5, None)


def test_the_prompt_cache_stays_bounded():
    model = RecordingModel()
    engine = _engine_for("dev", model)
    for i in range(mflux_engine.PROMPT_CACHE_LIMIT + 3):
        engine.generate(GenerationParams(f"prompt {i}", 1, 64, 64, 2, 3.5), RecordingProgress())
    assert len(model.prompt_cache) <= mflux_engine.PROMPT_CACHE_LIMIT
