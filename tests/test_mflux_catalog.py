"""The mflux catalog against the installed mflux: what the server reads from mflux's registry, and every fact it
hand-writes per family (worker/engines/mflux/families/), checked where mflux states it. An mflux upgrade that
changes a fact fails here, not in production. Also: loading errors say what is wrong and how to fix it, and
--path is never run as another model's weights.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import socket
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "mflux", reason="mflux is not installed; install it with `.venv/bin/python scripts/install_mflux.py`"
)

import mlx.core as mx
from mflux.cli.defaults import defaults
from mflux.models.common.config.model_config import AVAILABLE_MODELS, ModelConfig
from mflux.models.common.resolution.model_revisions import ModelRevisions
from mflux.models.flux.latent_creator.flux_latent_creator import FluxLatentCreator
from mflux.models.flux2.latent_creator.flux2_latent_creator import Flux2LatentCreator

from core.engines import EngineConfig
from core.models import ModelKind, Variant
from core.tasks import GenerationParams
from worker.engines.base import EngineLoadError, ModelLoadError
from worker.engines.mflux import hints
from worker.engines.mflux.catalog import catalog, served
from worker.engines.mflux.engine import MfluxEngine
from worker.engines.mflux.families import FAMILIES, NOT_SERVED
from worker.engines.mflux.family import Preview
from worker.engines.mflux.previews import LATENT_RGB_FACTORS, PREVIEW_MAX_SIDE, latents_to_preview

pytestmark = pytest.mark.mflux

MEMBERS = [(family, member) for family in FAMILIES for member in family.members]
IDS = [f"{family.name}:{member.key}" for family, member in MEMBERS]


def model_class(family) -> type:
    module, name = family.class_path.split(":")
    return getattr(importlib.import_module(module), name)


# -- what mflux's registry says ---------------------------------------------------------------------------


def test_every_registry_model_is_served_or_said_not_to_be():
    keys = {member.key for _, member in MEMBERS}
    assert set(AVAILABLE_MODELS) == keys | NOT_SERVED
    assert not keys & NOT_SERVED


def test_the_catalog_reads_names_aliases_steps_repos_and_revisions_from_mflux():
    models = catalog(EngineConfig()).models
    assert len(models) == len(served()) >= 50
    for model in models:
        family, member, _ = served()[model.name]
        config = AVAILABLE_MODELS[member.key]
        assert model.repo == config.model_name
        assert model.revision == ModelRevisions.get(config.model_name)
        if not (member.steps_fixed and family.kind is ModelKind.UPSCALE):
            assert model.default_steps == defaults.model_inference_steps(member.key)
        for alias in model.aliases:
            assert ModelConfig.from_name(model_name=alias.removesuffix(family.suffix), base_model=None) is config


def test_the_mflux_version_is_the_one_the_server_is_written_for():
    script = Path(__file__).resolve().parents[1] / "scripts" / "install_mflux.py"
    pinned = next(line for line in script.read_text().splitlines() if line.startswith("MFLUX_VERSION"))
    assert importlib.metadata.version("mflux") == hints.MFLUX_VERSION == pinned.split('"')[1]


# -- what the families say, against the classes ------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_the_class_builds_with_the_keywords_the_engine_passes(family):
    parameters = inspect.signature(model_class(family).__init__).parameters
    assert {"quantize", "model_path", "model_config"} <= set(parameters)


@pytest.mark.parametrize(("family", "member"), MEMBERS, ids=IDS)
def test_generate_image_takes_every_keyword_the_family_builds(family, member, tmp_path):
    params = GenerationParams(
        "a prompt", 7, 64, 48, 4, member.default_guidance, negative_prompt="blurry", init_image=str(tmp_path / "i"),
        image_strength=0.5, references=(str(tmp_path / "r"),), mask=str(tmp_path / "m"),
    )  # fmt: skip
    kwargs = family.arguments(params, member)
    accepted = set(inspect.signature(model_class(family).generate_image).parameters)
    assert set(kwargs) <= accepted
    assert "seed" in kwargs
    if "image_strength" in kwargs:
        assert family.img2img, "only families that really start from the image get a strength (Kontext does not)"
    if member.negative != "never":
        assert "negative_prompt" in accepted


def test_flux1_accepts_a_negative_prompt_but_never_uses_it():
    """Why FLUX.1 says never: the parameter exists only in the signature."""
    flux1 = next(f for f in FAMILIES if f.name == "flux1")
    assert inspect.getsource(model_class(flux1).generate_image).count("negative_prompt") == 1


def _mflux_default_guidance(family, member) -> float | None:
    """The guidance mflux itself runs a model at, where it says so in code we can read."""
    key = member.key
    if family.name == "flux1":
        return defaults.GUIDANCE_SCALE  # what mflux-generate passes
    if family.name == "flux1-kontext":
        return defaults.GUIDANCE_SCALE_KONTEXT
    if family.name == "flux1-fill":
        return defaults.DEFAULT_DEV_FILL_GUIDANCE
    if key == "qwen-image":
        from mflux.models.qwen.cli.qwen_image_generate import QwenImageCommand

        return QwenImageCommand._guidance(Namespace(guidance=None))
    if family.name == "krea-2":
        from mflux.models.krea2.cli import krea2_generate

        return krea2_generate.DEFAULT_GUIDANCE
    if family.name == "anima":
        return model_class(family).DEFAULT_GUIDANCE[key]
    if key == "iris-3b-base":
        return model_class(family).DEFAULT_GUIDANCE
    if key in ("fibo2", "moss-image-sft", "moss-image-base"):
        return model_class(family).DEFAULT_GUIDANCE
    if family.name in ("flux2-klein", "flux2-klein-edit") and not member.guidance_adjustable:
        return inspect.signature(model_class(family).generate_image).parameters["guidance"].default
    if key == "z-image-turbo":
        return 0.0  # ZImage.generate_image forces it for models without guidance support
    if key == "ernie-image":
        from mflux.models.ernie_image.cli.ernie_image_generate import build_parser

        return build_parser().get_default("guidance")
    return None


@pytest.mark.parametrize(("family", "member"), MEMBERS, ids=IDS)
def test_default_guidance_agrees_with_mflux_where_it_states_one(family, member):
    expected = _mflux_default_guidance(family, member)
    if expected is not None:
        assert member.default_guidance == expected


@pytest.mark.parametrize(("family", "member"), MEMBERS, ids=IDS)
def test_guidance_adjustability_follows_mflux(family, member):
    config = AVAILABLE_MODELS[member.key]
    if family.name.startswith("flux2-klein"):
        # The registry says True for every klein; mflux-generate-flux2 rejects guidance other than 1.0 for any
        # model whose repo name lacks "base" (the distilled ones).
        assert member.guidance_adjustable == ("base" in config.model_name.lower())
    elif config.supports_guidance is None:
        assert member.guidance_adjustable  # Qwen-Image: unset, yet it scales by the guidance every step
    elif member.guidance_adjustable:
        assert config.supports_guidance or family.name in ("ming",)


def test_krea2_takes_a_negative_prompt_only_away_from_guidance_one():
    krea = catalog(EngineConfig()).get("krea-2")
    assert not krea.supports_negative_prompt  # at its default guidance 1.0 mflux never encodes one
    assert krea.uses_negative_prompt(4.0)


# -- previews ---------------------------------------------------------------------------------------------


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
    preview = np.asarray(latents_to_preview(packed, Preview("packed", rgb), 48, 64)).astype(np.float64)
    assert np.abs(preview - expected).max() <= 1.0  # float32 vs float64 rounding only


def test_a_latent_space_without_factors_shows_its_first_channels():
    latents = np.zeros((1, 16, 4, 4), dtype=np.float32)
    latents[0, 0, 0, 0] = 5.0
    pixels = np.asarray(latents_to_preview(latents, Preview("spatial", None), 32, 32))
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[1, 1]) == (0, 0, 0)


def test_previews_stay_small_for_large_images():
    latents = np.zeros((1, 16, 2048 // 8, 1024 // 8), dtype=np.float32)
    assert max(latents_to_preview(latents, Preview("spatial", "flux1"), 2048, 1024).size) <= PREVIEW_MAX_SIDE


# -- start-up checks and loading errors --------------------------------------------------------------------


def test_an_unknown_model_lists_the_valid_ones():
    with pytest.raises(EngineLoadError, match=r"schnell.*krea-2"):
        catalog(EngineConfig(model="flux-pro"))


@pytest.mark.parametrize("bits", [7, 0, 16])
def test_unsupported_quantization_is_refused_at_start(bits):
    with pytest.raises(EngineLoadError, match=f"--quantize {bits}.*3, 4, 5, 6, 8"):
        catalog(EngineConfig(quantize=bits))


def test_lora_scales_must_match_the_paths():
    with pytest.raises(EngineLoadError, match="2 LoRA path"):
        catalog(EngineConfig(model="dev", lora_paths=("a.safetensors", "b.safetensors"), lora_scales=(0.5,)))
    with pytest.raises(EngineLoadError, match="without any LoRA paths"):
        catalog(EngineConfig(model="dev", lora_scales=(0.5,)))


def test_path_holding_another_models_saved_weights_is_refused_or_inferred(tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "mflux_model.json").write_text(json.dumps({"model_name": "dev", "base_model": None}))
    with pytest.raises(EngineLoadError, match="holds weights of dev, not of --model schnell"):
        catalog(EngineConfig(model="schnell", path=str(saved)))
    assert catalog(EngineConfig(path=str(saved))).default == "dev"  # no --model: inferred
    assert "dev" in catalog(EngineConfig(path=str(saved))).present
    snapshot = tmp_path / "hub" / "models--Tongyi-MAI--Z-Image-Turbo" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert catalog(EngineConfig(path=str(snapshot))).default == "z-image-turbo"
    with pytest.raises(EngineLoadError, match="Cannot tell which model"):
        catalog(EngineConfig(path=str(tmp_path)))


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
    engine = MfluxEngine(EngineConfig(model="schnell", quantize=8))
    with pytest.raises(ModelLoadError) as caught:
        engine.load(Variant("schnell", 8))
    message = str(caught.value)
    assert "'schnell'" in message and "black-forest-labs/FLUX.1-schnell at revision 741f7c3ce8b3" in message
    assert "--path" in message and "mflux-check" in message and "network access" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert caught.value.__cause__ is not None


@pytest.mark.usefixtures("offline")
def test_loading_from_a_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    engine = MfluxEngine(EngineConfig(model="dev", path=str(missing)))
    with pytest.raises(ModelLoadError) as caught:
        engine.load(Variant("dev", path=str(missing)))
    assert str(missing) in str(caught.value) and "black-forest-labs/FLUX.1-dev" in str(caught.value)


def test_an_incompatible_mflux_is_said_to_be_one_not_blamed_on_the_weights(monkeypatch):
    engine = MfluxEngine(EngineConfig())
    flux1 = next(f for f in FAMILIES if f.name == "flux1")

    def changed_signature(*args, **kwargs):
        raise TypeError("__init__() got an unexpected keyword argument 'model_config'")

    monkeypatch.setattr(model_class(flux1), "__init__", changed_signature)
    with pytest.raises(ModelLoadError, match="mflux version this server does not know") as caught:
        engine.load(Variant("schnell"))
    assert "weights" not in str(caught.value).split("not like")[0]


def test_a_missing_mflux_says_how_to_install_it(monkeypatch):
    import worker.engines.mflux.engine as engine_module

    real = engine_module.importlib.util.find_spec
    monkeypatch.setattr(engine_module.importlib.util, "find_spec", lambda n, *a: None if n == "mflux" else real(n, *a))
    with pytest.raises(EngineLoadError, match="not installed") as caught:
        MfluxEngine(EngineConfig())
    assert "install_mflux.py" in str(caught.value)
