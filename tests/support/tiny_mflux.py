"""Weight-free "real loop at zero layers" builders for every mflux 0.24.0 family.

`build_tiny(family_key) -> model` returns an instance of the family's REAL pipeline class
(created with ``Class.__new__`` so no weights are downloaded), whose REAL transformer class
is built with zero (or the minimum possible number of) blocks and random weights. Only the
tokenizers / text encoders / VAE are replaced by tiny stand-ins (or the prompt cache is
pre-filled), so ``generate_image`` runs the family's own denoising loop, scheduler, latent
creator, callback plumbing and ``ImageUtil.to_image``.

Everything here was derived from reading mflux 0.24.0 source; see families.md for the notes.
The stand-ins are deterministic (seeded from the prompt text) so results are reproducible.

Usage:
    from tests.support.tiny_mflux import build_tiny, FAMILIES, PROMPTS
    model = build_tiny("flux1-schnell")
    img = model.generate_image(seed=1, prompt=PROMPTS.get("flux1-schnell", "a cat"), num_inference_steps=3,
                               height=48, width=64)
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
from mflux.callbacks.callback_registry import CallbackRegistry
from mflux.models.common.config.model_config import AVAILABLE_MODELS, ModelConfig
from mflux.models.common.tokenizer.tokenizer_output import TokenizerOutput
from mlx import nn

DEFAULT_PROMPT = "a small red fox in the snow"
# FIBO (v1) and FIBO-Edit require a JSON prompt; FIBO edit needs an `edit_instruction`.
FIBO_PROMPT = json.dumps({"short_description": "a small red fox in the snow"})
FIBO_EDIT_PROMPT = json.dumps({"edit_instruction": "make the fox blue"})


# --------------------------------------------------------------------------------------
# Generic stand-ins
# --------------------------------------------------------------------------------------
# Every text that reaches a stand-in tokenizer / processor / prompt-cache factory is appended here, so a probe can
# tell whether a family really encoded the negative prompt (see cfg_probe.py). Clear it between runs.
ENCODED_TEXTS: list = []


def _log_text(text):
    ENCODED_TEXTS.append(text)


def _seed_of(text) -> int:
    return zlib.crc32(repr(text).encode("utf-8")) & 0x7FFFFFFF


def _rand(shape, text, dtype=mx.float32) -> mx.array:
    return mx.random.normal(shape=tuple(shape), key=mx.random.key(_seed_of(text))).astype(dtype)


def _num_tokens(prompt) -> int:
    # deterministic, short sequence length: 4..12 tokens
    words = str(prompt).split()
    return max(4, min(12, len(words) + 3))


class FakeHFTokenizer:
    """Just enough of a transformers PreTrainedTokenizer for code paths that call `.tokenizer`."""

    def __call__(
        self,
        text,
        add_special_tokens=True,
        return_tensors=None,
        padding=None,
        truncation=None,
        max_length=None,
        **kwargs,
    ):
        texts = text if isinstance(text, list) else [text]
        _log_text(text)
        n = max(_num_tokens(t) for t in texts)
        if max_length is not None and padding == "max_length":
            n = max_length
        ids = [[(_seed_of(t) + i) % 1000 + 1 for i in range(n)] for t in texts]
        mask = [[1] * n for _ in texts]
        if return_tensors == "np":
            return {"input_ids": np.array(ids, dtype=np.int64), "attention_mask": np.array(mask, dtype=np.int64)}
        if not isinstance(text, list):
            return {"input_ids": ids[0], "attention_mask": mask[0]}
        return {"input_ids": ids, "attention_mask": mask}

    def apply_chat_template(
        self, messages, tokenize=False, add_generation_prompt=False, return_dict=False, return_tensors=None, **kwargs
    ):
        text = json.dumps(messages, default=str)
        if not tokenize:
            return text
        out = self(text if not (messages and isinstance(messages[0], list)) else [text])
        return out if return_dict else out["input_ids"]

    def decode(self, ids, **kwargs):
        return ""


class FakeTokenizer:
    """Stand-in for mflux.models.common.tokenizer.(Language|VisionLanguage)Tokenizer."""

    def __init__(self, max_length: int = 512):
        self.max_length = max_length
        self.tokenizer = FakeHFTokenizer()

    def tokenize(self, prompt, images=None, max_length=None, keep_empty=False, **kwargs) -> TokenizerOutput:
        prompts = prompt if isinstance(prompt, list) else [prompt]
        _log_text(prompt)
        n = max(_num_tokens(p) for p in prompts)
        ids = mx.array([[(_seed_of(p) + i) % 1000 + 1 for i in range(n)] for p in prompts], dtype=mx.int32)
        return TokenizerOutput(input_ids=ids, attention_mask=mx.ones(ids.shape, dtype=mx.int32))

    def tokenize_one(self, prompt) -> np.ndarray:  # Ideogram 4
        _log_text(prompt)
        n = _num_tokens(prompt)
        return np.array([(_seed_of(prompt) + i) % 1000 + 1 for i in range(n)], dtype=np.int64)


class TinyVAE(nn.Module):
    """A VAE stand-in: encode = area-downsample + 1x1 linear, decode = nearest-upsample + 1x1 linear + tanh.

    Accepts 4D (B,C,H,W) or 5D (B,C,1,H,W) inputs like the real mflux VAEs and returns 4D
    (VAEUtil squeezes a singleton T axis anyway). `out_5d=True` makes encode/decode return 5D.
    """

    def __init__(
        self,
        latent_channels: int = 16,
        spatial_scale: int = 8,
        out_5d: bool = False,
        in_channels: int = 3,
        out_channels: int = 3,
    ):
        super().__init__()
        self.latent_channels = latent_channels
        self.spatial_scale = spatial_scale
        self.out_5d = out_5d
        self.to_latent = nn.Linear(in_channels, latent_channels)
        self.to_rgb = nn.Linear(latent_channels, out_channels)

    def encode(self, image: mx.array) -> mx.array:
        if image.ndim == 5:
            image = image[:, :, 0]
        s = self.spatial_scale
        b, c, h, w = image.shape
        x = image.transpose(0, 2, 3, 1).reshape(b, h // s, s, w // s, s, c).mean(axis=(2, 4))
        lat = self.to_latent(x).transpose(0, 3, 1, 2)
        return lat[:, :, None] if self.out_5d else lat

    def decode(self, latents: mx.array) -> mx.array:
        if latents.ndim == 5:
            latents = latents[:, :, 0]
        s = self.spatial_scale
        x = latents.transpose(0, 2, 3, 1).astype(mx.float32)
        x = mx.repeat(mx.repeat(x, s, axis=1), s, axis=2)
        img = mx.tanh(self.to_rgb(x)).transpose(0, 3, 1, 2)
        return img[:, :, None] if self.out_5d else img


class _TinyConvEncoder(nn.Module):
    # (B,3,H,W) -> (B,out,H/s,W/s), NCHW in and out, like Flux2Encoder
    def __init__(self, out_channels: int, scale: int = 8):
        super().__init__()
        self.scale = scale
        self.proj = nn.Linear(3, out_channels)

    def __call__(self, image):
        s = self.scale
        b, c, h, w = image.shape
        x = image.transpose(0, 2, 3, 1).reshape(b, h // s, s, w // s, s, c).mean(axis=(2, 4))
        return self.proj(x).transpose(0, 3, 1, 2)


class _TinyConvDecoder(nn.Module):
    # (B,C,h,w) -> (B,3,h*s,w*s), NCHW, like Flux2Decoder
    def __init__(self, in_channels: int, scale: int = 8):
        super().__init__()
        self.scale = scale
        self.proj = nn.Linear(in_channels, 3)

    def __call__(self, latents):
        s = self.scale
        x = latents.transpose(0, 2, 3, 1).astype(mx.float32)
        x = mx.repeat(mx.repeat(x, s, axis=1), s, axis=2)
        return mx.tanh(self.proj(x)).transpose(0, 3, 1, 2)


def tiny_flux2_vae():
    """The REAL Flux2VAE class (encode/decode/bn/unpack_packed_latents/normalize_latents/decode_packed_latents)
    with its encoder/decoder swapped for tiny NCHW modules; quant convs and BatchNorm stats are real."""
    from mflux.models.flux2.model.flux2_vae.common.batch_norm_stats import Flux2BatchNormStats
    from mflux.models.flux2.model.flux2_vae.vae import Flux2VAE

    vae = Flux2VAE.__new__(Flux2VAE)
    nn.Module.__init__(vae)
    c = Flux2VAE.latent_channels  # 32
    vae.encoder = _TinyConvEncoder(2 * c)
    vae.decoder = _TinyConvDecoder(c)
    vae.quant_conv = nn.Conv2d(2 * c, 2 * c, kernel_size=1, padding=0)
    vae.post_quant_conv = nn.Conv2d(c, c, kernel_size=1, padding=0)
    vae.bn = Flux2BatchNormStats(num_features=4 * c, eps=1e-4, momentum=0.1)
    vae.decode_mode = Flux2VAE.DECODE_LEGACY
    return vae


def _bare(cls):
    """An instance of `cls` without running its weight-loading __init__."""
    obj = cls.__new__(cls)
    if isinstance(obj, nn.Module):
        nn.Module.__init__(obj)
    return obj


def _common(model, model_config: ModelConfig, prompt_cache: bool = True):
    model.model_config = model_config
    model.callbacks = CallbackRegistry()
    model.tiling_config = None
    model.bits = None
    model.lora_paths = None
    model.lora_scales = None
    if prompt_cache:
        model.prompt_cache = {}
    return model


def _compute_precision():
    from mflux.models.common.compute_precision import ComputePrecision

    return ComputePrecision(None)


# --------------------------------------------------------------------------------------
# FLUX.1 (txt2img, Kontext, Fill)
# --------------------------------------------------------------------------------------
class AutoPromptCache(dict):
    """A prompt cache that answers every key: `key in cache` is always True and a missing key is filled by
    `factory(key)` (then stored). This is how the weight-free builds feed families whose encoder path starts
    with `if key in self.prompt_cache: return self.prompt_cache[key]`."""

    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def __missing__(self, key):
        if isinstance(key, str):  # tuple keys (Krea 2, ERNIE, Ideogram 4) are logged by their factory
            _log_text(key)
        value = self.factory(key)
        self[key] = value
        return value

    def __contains__(self, key):
        return True


def _flux1_cache_entry(prompt):
    # FLUX.1 PromptEncoder: prompt_cache[prompt] -> (T5 embeds (1, L, 4096), CLIP pooled (1, 768))
    return (
        _rand((1, _num_tokens(prompt), 4096), ("t5", prompt), mx.bfloat16),
        _rand((1, 768), ("clip", prompt), mx.bfloat16),
    )


def _flux1(cls, model_config):
    from mflux.models.flux.model.flux_transformer.transformer import Transformer

    model = _common(_bare(cls), model_config)
    model.prompt_cache = AutoPromptCache(_flux1_cache_entry)
    model.tokenizers = {"t5": None, "clip": None}
    model.t5_text_encoder = None
    model.clip_text_encoder = None
    model.transformer = Transformer(
        model_config=model_config, num_transformer_blocks=0, num_single_transformer_blocks=0
    )
    model.vae = TinyVAE(16, 8)
    return model


def build_flux1(key):
    from mflux.models.flux.variants.txt2img.flux import Flux1

    return _flux1(
        Flux1,
        {
            "flux1-schnell": ModelConfig.schnell(),
            "flux1-dev": ModelConfig.dev(),
            "flux1-krea-dev": ModelConfig.krea_dev(),
        }[key],
    )


def build_kontext(key):
    from mflux.models.flux.variants.kontext.flux_kontext import Flux1Kontext

    return _flux1(Flux1Kontext, ModelConfig.dev_kontext())


def build_fill(key):
    from mflux.models.flux.variants.fill.flux_fill import Flux1Fill

    return _flux1(Flux1Fill, ModelConfig.dev_fill())  # x_embedder input = 384 (64 latent + 320 mask/masked-image)


# --------------------------------------------------------------------------------------
# FLUX.2 klein (txt2img + edit) -- no prompt cache in the encoder path: fake tokenizer + text encoder
# --------------------------------------------------------------------------------------
class FakeQwen3TextEncoder:
    """Stand-in for Qwen3TextEncoder.get_prompt_embeds(input_ids, attention_mask, hidden_state_layers, ...)
    -> (B, L, len(layers) * hidden) (FLUX.2 stacks 3 layers: joint_attention_dim = 3 * hidden)."""

    def __init__(self, out_dim: int, dtype=mx.bfloat16):
        self.out_dim = out_dim
        self.dtype = dtype

    def get_prompt_embeds(self, input_ids, attention_mask, hidden_state_layers=None, position_ids=None, **kw):
        b, n = input_ids.shape
        return _rand((b, n, self.out_dim), ("qwen3", np.array(input_ids).tolist()), self.dtype)


TINY_FLUX2 = dict(
    num_layers=0, num_single_layers=0, num_attention_heads=1, attention_head_dim=128, joint_attention_dim=96
)


def _flux2(cls, model_config):
    from mflux.models.flux2.model.flux2_transformer.transformer import Flux2Transformer

    model = _common(_bare(cls), model_config)
    model.small_text_encoder = False
    model.small_decoder = False
    model.compute_precision = _compute_precision()
    model.tokenizers = {"qwen3": FakeTokenizer(512)}
    model.text_encoder = FakeQwen3TextEncoder(TINY_FLUX2["joint_attention_dim"])
    model.transformer = Flux2Transformer(**TINY_FLUX2)
    model.vae = tiny_flux2_vae()
    return model


_FLUX2_CONFIGS = {
    "flux2-klein-4b": "flux2-klein-4b",
    "flux2-klein-9b": "flux2-klein-9b",
    "flux2-klein-9b-kv": "flux2-klein-9b-kv",
    "flux2-klein-base-4b": "flux2-klein-base-4b",
    "flux2-klein-base-9b": "flux2-klein-base-9b",
    "flux2-klein-edit": "flux2-klein-4b",
    "flux2-klein-9b-kv-edit": "flux2-klein-9b-kv",
}


def build_flux2(key):
    from mflux.models.flux2.variants.txt2img.flux2_klein import Flux2Klein

    return _flux2(Flux2Klein, AVAILABLE_MODELS[_FLUX2_CONFIGS[key]])


def build_flux2_edit(key):
    from mflux.models.flux2.variants.edit.flux2_klein_edit import Flux2KleinEdit

    return _flux2(Flux2KleinEdit, AVAILABLE_MODELS[_FLUX2_CONFIGS[key]])


# --------------------------------------------------------------------------------------
# FLUX.3 klein (txt2img + edit) -- prompt_cache[prompt] = (tokens (1,L,joint), ids (L,4))
# --------------------------------------------------------------------------------------
TINY_FLUX3 = dict(
    num_layers=0, num_single_layers=0, num_attention_heads=1, attention_head_dim=128, joint_attention_dim=64
)


def _flux3_cache_entry(prompt):
    # _Flux3KleinCore._encode_prompt: prompt_cache[prompt] -> (tokens (1, L, joint_attention_dim) bf16, ids (L, 4))
    from mflux.models.flux3.model.flux3_text_encoder.prompt_encoder import Flux3PromptEncoder

    n = 80  # the real encoder right-pads to a multiple of 80 tokens
    return (
        _rand((1, n, TINY_FLUX3["joint_attention_dim"]), ("flux3", prompt), mx.bfloat16),
        Flux3PromptEncoder.prepare_text_ids(n),
    )


def _flux3(cls, model_config):
    from mflux.models.flux3.model.flux3_transformer.flux3_transformer import Flux3Transformer

    model = _common(_bare(cls), model_config)
    model.compute_precision = _compute_precision()
    model._noise_override = None
    model.prompt_cache = AutoPromptCache(_flux3_cache_entry)
    model.tokenizers = {"qwen3_vl": None}
    model.text_encoder = None
    model.transformer = Flux3Transformer(**{**TINY_FLUX3, **model_config.transformer_overrides})
    model.vae = tiny_flux2_vae()
    return model


def build_flux3(key):
    from mflux.models.flux3.variants.txt2img.flux3_klein import Flux3Klein

    return _flux3(
        Flux3Klein,
        AVAILABLE_MODELS[{"flux3-klein": "flux3-image-klein", "flux3-klein-base": "flux3-image-klein-base"}[key]],
    )


def build_flux3_edit(key):
    from mflux.models.flux3.variants.edit.flux3_klein_edit import Flux3KleinEdit

    return _flux3(Flux3KleinEdit, ModelConfig.flux3_image_klein())


# --------------------------------------------------------------------------------------
# Z-Image (turbo / base) -- no prompt cache: fake tokenizer + text encoder (returns (1, L, cap_feat_dim))
# --------------------------------------------------------------------------------------
TINY_ZIMAGE = dict(dim=64, n_layers=0, n_refiner_layers=0, n_heads=2, cap_feat_dim=32, axes_dims=[8, 12, 12])


class FakeCallableTextEncoder:
    """text_encoder(input_ids, attention_mask) -> (B, L, dim) (Z-Image TextEncoder / Qwen3 last hidden state)."""

    def __init__(self, dim: int, dtype=mx.bfloat16, name="te"):
        self.dim, self.dtype, self.name = dim, dtype, name

    def __call__(self, input_ids, attention_mask=None, *args, **kwargs):
        b, n = input_ids.shape
        return _rand((b, n, self.dim), (self.name, np.array(input_ids).tolist()), self.dtype)


def build_zimage(key):
    from mflux.models.z_image.model.z_image_transformer.transformer import ZImageTransformer
    from mflux.models.z_image.variants.z_image import ZImage

    model = _common(
        _bare(ZImage),
        {"z-image-turbo": ModelConfig.z_image_turbo(), "z-image": ModelConfig.z_image()}[key],
        prompt_cache=False,
    )
    model.float32 = False
    model.compute_precision = _compute_precision()
    model.tokenizers = {"z_image": FakeTokenizer(512)}
    model.text_encoder = FakeCallableTextEncoder(TINY_ZIMAGE["cap_feat_dim"], name="zimage")
    model.transformer = ZImageTransformer(**TINY_ZIMAGE)
    model.vae = TinyVAE(16, 8, out_5d=True)  # the real Z-Image VAE returns (B, C, 1, H, W)
    return model


# --------------------------------------------------------------------------------------
# Qwen-Image (2512) + Qwen-Image-Edit (2509 / 2511)
# --------------------------------------------------------------------------------------
TINY_QWEN = dict(num_layers=0, num_attention_heads=1, attention_head_dim=128, joint_attention_dim=64)


class FakeQwenTextEncoder:
    """QwenTextEncoder(input_ids=, attention_mask=) -> (prompt_embeds (B, L, 3584), mask (B, L))."""

    def __init__(self, dim):
        self.dim = dim

    def __call__(self, input_ids, attention_mask):
        b, n = input_ids.shape
        return _rand((b, n, self.dim), ("qwen", np.array(input_ids).tolist()), mx.bfloat16), attention_mask


class FakeQwenVLTokenizer(FakeTokenizer):
    """QwenVisionLanguageTokenizer.tokenize_with_image(prompt, image_paths, vl_width=, vl_height=)
    -> (input_ids, attention_mask, pixel_values, image_grid_thw)."""

    def tokenize_with_image(self, prompt, image_paths, vl_width=None, vl_height=None):
        _log_text(prompt)
        n = _num_tokens(prompt) + 4 * len(image_paths)
        ids = mx.array([[(_seed_of(prompt) + i) % 1000 + 1 for i in range(n)]], dtype=mx.int32)
        return ids, mx.ones(ids.shape, dtype=mx.int32), mx.zeros((4, 8)), mx.array([[1, 2, 2]])


class FakeQwenVLEncoder:
    """QwenVisionLanguageEncoder(input_ids=, attention_mask=, pixel_values=, image_grid_thw=) -> (hidden, mask)."""

    def __init__(self, dim):
        self.dim = dim

    def __call__(self, input_ids, attention_mask, pixel_values=None, image_grid_thw=None):
        b, n = input_ids.shape
        return _rand((b, n, self.dim), ("qwen-vl", np.array(input_ids).tolist()), mx.bfloat16), attention_mask


def build_qwen(key):
    from mflux.models.qwen.model.qwen_transformer.qwen_transformer import QwenTransformer
    from mflux.models.qwen.variants.txt2img.qwen_image import QwenImage

    model = _common(_bare(QwenImage), ModelConfig.qwen_image())
    model.tokenizers = {"qwen": FakeTokenizer(1024)}
    model.text_encoder = FakeQwenTextEncoder(TINY_QWEN["joint_attention_dim"])
    model.transformer = QwenTransformer(**TINY_QWEN)
    model.vae = TinyVAE(16, 8)
    return model


def build_qwen_edit(key):
    from mflux.models.qwen.model.qwen_transformer.qwen_transformer import QwenTransformer
    from mflux.models.qwen.variants.edit.qwen_image_edit import QwenImageEdit

    config = {
        "qwen-image-edit": ModelConfig.qwen_image_edit(),
        "qwen-image-edit-2511": ModelConfig.qwen_image_edit_2511(),
    }[key]
    model = _common(_bare(QwenImageEdit), config)
    model.tokenizers = {"qwen": FakeTokenizer(1024), "qwen_vl": FakeQwenVLTokenizer(1024)}
    model.text_encoder = None
    model.qwen_vl_encoder = FakeQwenVLEncoder(TINY_QWEN["joint_attention_dim"])
    model.transformer = QwenTransformer(**{**TINY_QWEN, **config.transformer_overrides})
    model.vae = TinyVAE(16, 8)
    return model


# --------------------------------------------------------------------------------------
# Qwen-Image 2.1 (base / turbo) + QwenImage21Edit
# --------------------------------------------------------------------------------------
TINY_QWEN21 = dict(num_layers=0, num_attention_heads=1, attention_head_dim=128, context_in_dim=64)


def _qwen21_cache_entry(prompt):
    # Qwen21PromptEncoder: prompt_cache[prompt] -> (prompt_embeds (1, L, context_in_dim), prompt_mask (1, L))
    n = _num_tokens(prompt)
    return (
        _rand((1, n, TINY_QWEN21["context_in_dim"]), ("qwen21", prompt), mx.bfloat16),
        mx.ones((1, n), dtype=mx.int32),
    )


def build_qwen21(key):
    from mflux.models.qwen21.model.qwen21_transformer.qwen21_transformer import Qwen21Transformer
    from mflux.models.qwen21.variants.txt2img.qwen_image_21 import QwenImage21

    config = {"qwen-image-2.1": ModelConfig.qwen_image_21(), "qwen-image-2.1-turbo": ModelConfig.qwen_image_21_turbo()}[
        key
    ]
    model = _common(_bare(QwenImage21), config)
    model.small_text_encoder = False
    model.compute_precision = _compute_precision()
    model.prompt_cache = AutoPromptCache(_qwen21_cache_entry)
    model.tokenizers = {"qwen21": None}
    model.text_encoder = None
    model.transformer = Qwen21Transformer(**TINY_QWEN21)
    model.vae = TinyVAE(64, 16)  # 64 latent channels at 1/16; decode receives (1, 64, 1, h, w)
    return model


class FakeQwen21Processor:
    """The parts of QwenImage21Processor that QwenImage21PromptEncoder / QwenImage21Edit use.
    Each reference image of (w, h) pixels becomes (h/32)*(w/32) <|image_pad|> tokens, like Qwen3-VL (16 px patches,
    2x2 merge); QwenImage21Layout expands each such slot to 4 latent tokens at 1/16."""

    IMAGE_TOKEN_ID = 151655

    def __init__(self):
        self.image_processor = SimpleNamespace(size={"shortest_edge": 1, "longest_edge": 16384 * 16384})
        self.tokenizer = FakeHFTokenizer()

    def apply_chat_template(self, messages, tokenize=False, return_dict=False, **kwargs):
        return [[1] * 6]

    def __call__(self, text=None, images=None, padding=True, padding_side="left", return_tensors="np", **kwargs):
        _log_text(text)
        ids = [1] * 6 + [(_seed_of(text) + i) % 1000 + 2 for i in range(_num_tokens(text))]
        for image in images or []:
            ids += [self.IMAGE_TOKEN_ID] * ((image.height // 32) * (image.width // 32))
        out = {"input_ids": np.array([ids], dtype=np.int64)}
        if images:
            out["pixel_values"] = np.zeros((4, 8), dtype=np.float32)
            out["image_grid_thw"] = np.array([[1, im.height // 16, im.width // 16] for im in images], dtype=np.int64)
        return out


class FakeQwen21VLTextEncoder:
    image_token_id = FakeQwen21Processor.IMAGE_TOKEN_ID

    def __call__(self, ids, pixel_values=None, image_grid_thw=None):
        b, n = ids.shape
        return _rand((b, n, TINY_QWEN21["context_in_dim"]), ("qwen21-vl", np.array(ids).tolist()), mx.bfloat16)


def build_qwen21_edit(key):
    from mflux.models.qwen21.model.qwen21_transformer.qwen_image21_transformer import QwenImage21Transformer
    from mflux.models.qwen21.variants.edit.qwen_image_21_edit import QwenImage21Edit

    config = {
        "qwen-image-2.1-edit": ModelConfig.qwen_image_21(),
        "qwen-image-2.1-turbo-edit": ModelConfig.qwen_image_21_turbo(),
    }[key]
    model = _common(_bare(QwenImage21Edit), config)
    model.small_text_encoder = False
    model.compute_precision = _compute_precision()
    model.tokenizers = {"qwen21": FakeTokenizer(1024)}
    model.processor = FakeQwen21Processor()
    model.text_encoder = FakeQwen21VLTextEncoder()
    # The edit path builds the transformer from the checkpoint's transformer/config.json dict.
    model._component_configs = {
        "transformer": dict(
            in_channels=64,
            out_channels=64,
            mlp_ratio=3,
            patch_size=1,
            causal_condition=True,
            axes_dims_rope=[16, 56, 56],
            **TINY_QWEN21,
        )
    }
    model.transformer = QwenImage21Transformer(model._component_configs["transformer"])
    model.vae = TinyVAE(64, 16, in_channels=4, out_channels=4)  # the edit path encodes/decodes RGBA (QwenImage21VAE)
    return model


# --------------------------------------------------------------------------------------
# Krea 2 (turbo / raw) -- prompt_cache[(prompt, negative_prompt, guidance)] = (embeds, neg_embeds | None)
# --------------------------------------------------------------------------------------
TINY_KREA2 = dict(features=64, heads=2, kvheads=2, layers=0, txtdim=32, txtlayers=1, txtheads=2, txtkvheads=2)


def _krea2_cache_entry(key):
    prompt, negative, guidance = key
    fused = TINY_KREA2["txtlayers"] * TINY_KREA2["txtdim"]  # (B, seq, txtlayers * txtdim) Qwen3-VL layer stack
    _log_text(prompt)
    embeds = _rand((1, _num_tokens(prompt), fused), ("krea2", prompt), mx.bfloat16)
    neg = None
    if guidance != 1.0:  # same rule as Krea2PromptEncoder.encode_prompt_pair
        neg_text = negative if negative and negative.strip() else " "
        _log_text(neg_text)
        neg = _rand((1, _num_tokens(neg_text), fused), ("krea2", neg_text), mx.bfloat16)
    return embeds, neg


def build_krea2(key):
    from mflux.models.krea2.model.krea2_transformer.transformer import Krea2Transformer
    from mflux.models.krea2.variants.txt2img.krea2 import Krea2

    model = _common(_bare(Krea2), {"krea-2": ModelConfig.krea2(), "krea-2-raw": ModelConfig.krea2_raw()}[key])
    model.prompt_cache = AutoPromptCache(_krea2_cache_entry)
    model.tokenizers = {"qwen3vl": None}
    model.text_encoder = None
    model.transformer = Krea2Transformer(**TINY_KREA2)  # text-fusion keeps its fixed 2+2 (tiny) blocks
    model.vae = TinyVAE(16, 8)  # QwenVAE in the real model
    return model


# --------------------------------------------------------------------------------------
# FIBO (v1), FIBO-lite, FIBO-Edit (+RMBG) -- SmolLM3 hidden-state list; transformer width fixed at 3072
# --------------------------------------------------------------------------------------
class FakeSmolLM3:
    """SmolLM3_3B_TextEncoder(input_ids=, attention_mask=, output_hidden_states=True) -> list of hidden states
    (B, L, 2048); PromptEncoder concatenates the last two (-> 4096) and pads/trims the list to 46 layers."""

    NUM_LAYERS = 4

    def __call__(self, input_ids, attention_mask=None, output_hidden_states=True):
        b, n = input_ids.shape
        key = np.array(input_ids).tolist()
        return [_rand((b, n, 2048), ("smol", i, key), mx.bfloat16) for i in range(self.NUM_LAYERS)]


def _fibo_transformer():
    from mflux.models.fibo.model.fibo_transformer.text_projection import BriaFiboTextProjection
    from mflux.models.fibo.model.fibo_transformer.transformer import FiboTransformer

    transformer = FiboTransformer(in_channels=48, num_layers=0, num_single_layers=0)
    # The prompt encoder always hands over 46 text layers (8 joint + 38 single in the real model) and the transformer
    # projects all of them, so zero blocks still need 46 caption projections. Their outputs feed no block, so MLX never
    # evaluates (or materialises) these weights.
    transformer.caption_projection = [BriaFiboTextProjection() for _ in range(46)]
    return transformer


def _fibo(cls, config):
    model = _common(_bare(cls), config, prompt_cache=False)
    model.tokenizers = {"fibo": FakeTokenizer(2048)}
    model.text_encoder = FakeSmolLM3()
    model.transformer = _fibo_transformer()
    model.vae = TinyVAE(48, 16)  # Wan2.2 VAE: 48 channels at 1/16
    return model


def build_fibo(key):
    from mflux.models.fibo.variants.txt2img.fibo import FIBO

    return _fibo(FIBO, {"fibo": ModelConfig.fibo(), "fibo-lite": ModelConfig.fibo_lite()}[key])


def build_fibo_edit(key):
    from mflux.models.fibo.variants.edit.fibo_edit import FIBOEdit

    return _fibo(FIBOEdit, {"fibo-edit": ModelConfig.fibo_edit(), "fibo-edit-rmbg": ModelConfig.fibo_edit_rmbg()}[key])


# --------------------------------------------------------------------------------------
# FIBO 2 (dev) + Fibo2Edit (edit-turbo) -- Qwen3-VL processor + text encoder stand-ins; Flux2VAE
# --------------------------------------------------------------------------------------
TINY_FIBO2 = dict(
    dim=64,
    n_layers=0,
    n_refiner_layers=0,
    n_heads=2,
    cap_feat_dim=48,
    injection_layer_ids=(),
    perceiver_num_layers=0,
    axes_dims=(8, 12, 12),
)


class FakeQwen3VLProcessor:
    def __init__(self):
        self.image_processor = SimpleNamespace(save_pretrained=lambda *a, **k: None)

    def __call__(self, texts, images=None, return_tensors="np", truncation=True, max_length=None, **kwargs):
        text = texts[0]
        _log_text(text)
        n = _num_tokens(text) + 4 * len(images or [])
        out = {"input_ids": np.array([[(_seed_of(text) + i) % 1000 + 1 for i in range(n)]], dtype=np.int64)}
        if images:
            out["pixel_values"] = np.zeros((4 * len(images), 8), dtype=np.float32)
            out["image_grid_thw"] = np.array([[1, 2, 2]] * len(images), dtype=np.int64)
        return out


class FakeFibo2TextEncoder:
    """Fibo2TextEncoder(input_ids, pixel_values, grids) -> indexable hidden states; layers 5..35 are read."""

    def __call__(self, input_ids, pixel_values=None, grids=None):
        b, n = input_ids.shape
        key = np.array(input_ids).tolist()
        d = TINY_FIBO2["cap_feat_dim"] // 3  # each bundle concatenates three layers
        return [_rand((b, n, d), ("fibo2", i, key), mx.bfloat16) for i in range(36)]


def _fibo2(cls, config):
    from mflux.models.fibo2.model.fibo2_transformer.fibo2_transformer import Fibo2Transformer

    model = _common(_bare(cls), config)
    model.tokenizers = {"qwen3_vl": FakeTokenizer(4096)}
    model.processor = FakeQwen3VLProcessor()
    model.fonts_dir = None
    model.text_encoder = FakeFibo2TextEncoder()
    model.transformer = Fibo2Transformer(**TINY_FIBO2)
    model.vae = tiny_flux2_vae()
    return model


def build_fibo2(key):
    from mflux.models.fibo2.variants.txt2img.fibo2 import Fibo2

    return _fibo2(Fibo2, ModelConfig.fibo2())


def build_fibo2_edit(key):
    from mflux.models.fibo2.variants.edit.fibo2_edit import Fibo2Edit

    return _fibo2(Fibo2Edit, ModelConfig.fibo2_edit_turbo())


# --------------------------------------------------------------------------------------
# ERNIE-Image (+ turbo) -- prompt_cache[(prompt, negative_prompt, guidance)] = (text_bth, text_lens)
# --------------------------------------------------------------------------------------
TINY_ERNIE = dict(hidden_size=128, num_attention_heads=1, num_layers=0, ffn_hidden_size=256, text_in_dim=64)


def _ernie_cache_entry(key):
    prompt, negative, guidance = key
    # same rule as ErnieImage._encode_prompts: the negative is encoded only when guidance > 1 (batched CFG)
    prompts = [prompt] if guidance <= 1.0 else [negative if negative and negative.strip() else " ", prompt]
    for p in prompts:
        _log_text(p)
    lengths = [_num_tokens(p) for p in prompts]
    t = max(lengths)
    bth = mx.stack([_rand((t, TINY_ERNIE["text_in_dim"]), ("ernie", p), mx.bfloat16) for p in prompts], axis=0)
    return bth, mx.array(lengths, dtype=mx.int32)


def build_ernie(key):
    from mflux.models.common.vae.tiling_config import TilingConfig
    from mflux.models.ernie_image.model.ernie_transformer.transformer import ErnieTransformer
    from mflux.models.ernie_image.variants.txt2img.ernie_image import ErnieImage

    config = {"ernie-image": ModelConfig.ernie_image(), "ernie-image-turbo": ModelConfig.ernie_image_turbo()}[key]
    model = _common(_bare(ErnieImage), config)
    model.tiling_config = TilingConfig(vae_decode_tiles_per_dim=None)  # as ErnieInitializer sets it
    model.prompt_cache = AutoPromptCache(_ernie_cache_entry)
    model.tokenizers = {"ernie": None}
    model.text_encoder = None
    model.transformer = ErnieTransformer(**{**config.transformer_overrides, **TINY_ERNIE})
    model.vae = tiny_flux2_vae()
    return model


# --------------------------------------------------------------------------------------
# Ideogram 4 -- two transformers (conditional + unconditional), Fp8Linear layers, Flux2VAE
# --------------------------------------------------------------------------------------
TINY_IDEOGRAM4 = dict(
    emb_dim=128, num_layers=0, num_heads=1, intermediate_size=256, adanln_dim=32, in_channels=128, llm_features_dim=64
)


def _randomize_fp8(module, seed):
    # Fp8Linear holds uint8 e4m3 codes (+ per-row scale); fill them with small finite random codes
    # (|value| < 1: exponent field <= 0b0111, i.e. codes 0x00-0x3F and 0x80-0xBF) instead of zeros.
    from mflux.models.ideogram4.model.ideogram4_transformer.fp8_linear import Fp8Linear

    rng = np.random.default_rng(seed)
    for _, m in module.named_modules():
        if isinstance(m, Fp8Linear) and m.weight.size:
            codes = rng.integers(0, 0x40, size=m.weight.shape) | (rng.integers(0, 2, size=m.weight.shape) << 7)
            m.weight = mx.array(codes.astype(np.uint8))
            m.weight_scale = mx.full((m.out_features,), 0.05, dtype=mx.float32)


def _ideogram4_cache_entry(key):
    # Ideogram4PromptEncoder.encode_prompt: prompt_cache[(prompt, width, height)] -> (1, text + image tokens, llm_dim)
    prompt, width, height = key
    _log_text(prompt)
    seq = _num_tokens(prompt) + (height // 16) * (width // 16)
    return _rand((1, seq, TINY_IDEOGRAM4["llm_features_dim"]), ("ideogram4", prompt), mx.float32)


def build_ideogram4(key):
    from mflux.models.ideogram4.model.ideogram4_transformer.config import Ideogram4Config
    from mflux.models.ideogram4.model.ideogram4_transformer.transformer import Ideogram4Transformer
    from mflux.models.ideogram4.variants.txt2img.ideogram4 import Ideogram4

    model = _common(_bare(Ideogram4), ModelConfig.ideogram4_fp8())
    model.model_path = None
    model.prompt_cache = AutoPromptCache(_ideogram4_cache_entry)
    model.tokenizers = {"ideogram4": FakeTokenizer(2048)}  # build_inputs() calls tokenize_one()
    model.text_encoder = None
    model.conditional_transformer = Ideogram4Transformer(Ideogram4Config(**TINY_IDEOGRAM4))
    model.unconditional_transformer = Ideogram4Transformer(Ideogram4Config(**TINY_IDEOGRAM4))
    _randomize_fp8(model.conditional_transformer, 1)
    _randomize_fp8(model.unconditional_transformer, 2)
    model.vae = tiny_flux2_vae()
    return model


# --------------------------------------------------------------------------------------
# Iris (turbo / base) -- pixel space, no VAE; prompt_cache[prompt] = (embeds (1,T,12,text_dim), mask (1,T))
# --------------------------------------------------------------------------------------
TINY_IRIS = dict(
    hidden_size=64,
    depth=0,
    dual_depth=0,
    num_heads=2,
    num_kv_heads=1,
    text_len=16,
    text_dim=32,
    text_num_layers=12,
    text_layer_num_heads=2,
    pixel_depth=0,
    pixel_hidden_size=16,
    pixel_attn_hidden_size=32,
    pixel_num_heads=2,
)


def _iris_cache_entry(prompt):
    t = TINY_IRIS["text_len"]
    emb = _rand((1, t, TINY_IRIS["text_num_layers"], TINY_IRIS["text_dim"]), ("iris", prompt), mx.bfloat16)
    return emb, mx.ones((1, t), dtype=mx.int32)


def build_iris(key):
    from mflux.models.iris.model.iris_transformer.iris_transformer import IrisTransformer
    from mflux.models.iris.variants.txt2img.iris import Iris

    model = _common(_bare(Iris), {"iris-3b": ModelConfig.iris_3b(), "iris-3b-base": ModelConfig.iris_3b_base()}[key])
    model.prompt_cache = AutoPromptCache(_iris_cache_entry)
    model.tokenizers = {"qwen3_vl": None}
    model.text_encoder = None
    model.transformer = IrisTransformer(**TINY_IRIS)
    return model


# --------------------------------------------------------------------------------------
# Lens (turbo) -- plain class (not nn.Module); text_encoder.encode(prompt) -> (1, S, 4, enc_hidden_dim)
# --------------------------------------------------------------------------------------
TINY_LENS = dict(num_layers=0, attention_head_dim=64, num_attention_heads=1, enc_hidden_dim=32, num_selected_layers=4)


class FakeLensEncoder:
    def encode(self, prompt):
        _log_text(prompt)
        return _rand(
            (1, _num_tokens(prompt), TINY_LENS["num_selected_layers"], TINY_LENS["enc_hidden_dim"]),
            ("lens", prompt),
            mx.float32,
        )


def build_lens(key):
    from mflux.models.lens.model.transformer.lens_transformer import LensTransformer
    from mflux.models.lens.variants.txt2img.lens_image import LensImage

    model = LensImage.__new__(LensImage)
    model.model_config = ModelConfig.lens_turbo()
    model.bits = None
    model.callbacks = CallbackRegistry()
    model.tiling_config = None
    model.text_encoder = FakeLensEncoder()
    model.transformer = LensTransformer(**TINY_LENS)
    model.vae = tiny_flux2_vae()
    return model


# --------------------------------------------------------------------------------------
# Ming-Image (design) -- private OrderedDict cache model._prompt_cache[prompt] = (cap_feats, cap_feats_2)
# --------------------------------------------------------------------------------------
TINY_MING = dict(dim=64, n_layers=0, n_refiner_layers=0, n_heads=2, cap_feat_dim=32, axes_dims=(8, 12, 12))


class _MingCache(OrderedDict):
    """MingImage.encode_prompt: `prompt in cache` -> move_to_end(prompt) -> cache[prompt], so the entry must really
    exist: __contains__ creates it. Values: (cap_feats (N1, cap_feat_dim), cap_feats_2 (N2, dim))."""

    def __contains__(self, prompt):
        if not super().__contains__(prompt):
            _log_text(prompt)
            n = _num_tokens(prompt)
            self[prompt] = (
                _rand((n, TINY_MING["cap_feat_dim"]), ("ming1", prompt), mx.bfloat16),
                _rand((4, TINY_MING["dim"]), ("ming2", prompt), mx.bfloat16),
            )
        return True


def build_ming(key):
    from mflux.models.ming_image.model.ming_transformer.ming_transformer import MingTransformer
    from mflux.models.ming_image.variants.ming_image import MingImage

    model = _common(_bare(MingImage), ModelConfig.ming_image_design(), prompt_cache=False)
    model.low_ram = False
    model._prompt_cache = _MingCache()
    model.tokenizers = {"ming": None}
    model.text_encoder = model.connector = model.heads = None
    model.transformer = MingTransformer(**TINY_MING)
    model.vae = TinyVAE(16, 8, in_channels=4, out_channels=4)  # MingVAE is an RGBA (4-channel) QwenVAE
    return model


# --------------------------------------------------------------------------------------
# MOSS-Image (sft / base) -- prompt_cache[prompt] = embeds (1, S, text_dim); Flux2VAE
# --------------------------------------------------------------------------------------
# 23 (tiny) layers instead of 0: generate_image's default uncond_skip_layers=(22,) is validated against the depth.
TINY_MOSS = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=23, text_dim=32)
TINY_MOSS_ZERO = dict(TINY_MOSS, num_layers=0)  # needs generate_image(..., uncond_skip_layers=())


def _moss_cache_entry(prompt):
    return _rand((1, _num_tokens(prompt), TINY_MOSS["text_dim"]), ("moss", prompt), mx.bfloat16)


def build_moss(key, zero_layers: bool = False):
    from mflux.models.moss_image.model.moss_image_transformer.moss_image_transformer import MOSSImageTransformer
    from mflux.models.moss_image.variants.txt2img.moss_image import MOSSImage

    model = _common(
        _bare(MOSSImage),
        {"moss-image-sft": ModelConfig.moss_image_sft(), "moss-image-base": ModelConfig.moss_image_base()}[key],
    )
    model.lora_paths, model.lora_scales, model.bake_lora = [], [], False
    model.prompt_cache = AutoPromptCache(_moss_cache_entry)
    model.tokenizers = {"qwen3_5": None}
    model.text_encoder = None
    model.transformer = MOSSImageTransformer(**(TINY_MOSS_ZERO if zero_layers else TINY_MOSS))
    model.vae = tiny_flux2_vae()
    return model


# --------------------------------------------------------------------------------------
# Boogu-Image (turbo) -- no prompt cache in use: fake chat-template tokenizer + get_instruction_features
# --------------------------------------------------------------------------------------
TINY_BOOGU = dict(
    hidden_size=96,
    num_layers=0,
    num_double_stream_layers=0,
    num_refiner_layers=0,
    num_attention_heads=2,
    num_kv_heads=1,
    multiple_of=16,
    axes_dim_rope=(16, 16, 16),
    instruction_feat_dim=32,
)


class FakeBooguTextEncoder:
    def get_instruction_features(self, input_ids, attention_mask=None):
        b, n = input_ids.shape
        return _rand((b, n, TINY_BOOGU["instruction_feat_dim"]), ("boogu", np.array(input_ids).tolist()), mx.bfloat16)


def build_boogu(key):
    from mflux.models.boogu.model.boogu_transformer.boogu_transformer import BooguImageTransformer
    from mflux.models.boogu.variants.txt2img.boogu_image import BooguImage

    model = _common(_bare(BooguImage), ModelConfig.boogu_image_turbo())
    model.lora_paths, model.lora_scales = [], []
    model.tokenizers = {"qwen3vl": FakeTokenizer(1024)}
    model.text_encoder = FakeBooguTextEncoder()
    model.transformer = BooguImageTransformer(**TINY_BOOGU)
    model.vae = TinyVAE(16, 8)  # FLUX.1 VAE in the real model
    return model


# --------------------------------------------------------------------------------------
# Anima (turbo / aesthetic / base) -- fake Qwen3 0.6B encoder; the REAL llm_adapter (part of the transformer) runs
# --------------------------------------------------------------------------------------
TINY_ANIMA = dict(dim=64, num_blocks=0, num_heads=2, context_dim=32, adaln_lora_dim=16)


class FakeAnimaQwen3:
    """Qwen3TextEncoder(ids, dtype=mx.float32) -> (hidden_states (1, L, 1024 -> context_dim), _)."""

    def __call__(self, input_ids, dtype=mx.float32, **kwargs):
        b, n = input_ids.shape
        return _rand((b, n, TINY_ANIMA["context_dim"]), ("anima", np.array(input_ids).tolist()), dtype), None


def build_anima(key):
    from mflux.models.anima.model.anima_transformer.anima_transformer import AnimaTransformer
    from mflux.models.anima.variants.txt2img.anima import Anima

    model = _common(_bare(Anima), AVAILABLE_MODELS[key])
    model.compute_precision = _compute_precision()
    model.tokenizers = {"qwen3": FakeTokenizer(4096), "t5": FakeTokenizer(512)}
    model.text_encoder = FakeAnimaQwen3()
    model.transformer = AnimaTransformer(**TINY_ANIMA)
    model.vae = TinyVAE(16, 8)  # QwenVAE in the real model
    return model


# --------------------------------------------------------------------------------------
# SeedVR2 (3b / 7b) upscaler -- the shipped text embedding (58, 5120) is real; one Euler step
# --------------------------------------------------------------------------------------
TINY_SEEDVR2 = dict(vid_dim=64, heads=1, head_dim=64, num_layers=0, mm_layers=0, rope_dim=32)


def build_seedvr2(key):
    from mflux.models.common.vae.tiling_config import TilingConfig
    from mflux.models.seedvr2.model.seedvr2_transformer.transformer import SeedVR2Transformer
    from mflux.models.seedvr2.variants.upscale.seedvr2 import SeedVR2

    config = {"seedvr2-3b": ModelConfig.seedvr2_3b(), "seedvr2-7b": ModelConfig.seedvr2_7b()}[key]
    model = _common(_bare(SeedVR2), config, prompt_cache=False)
    model.tiling_config = TilingConfig()  # as SeedVR2Initializer sets it (tiled encode/decode)
    overrides = {
        k: v
        for k, v in config.transformer_overrides.items()
        if k not in ("vid_dim", "heads", "num_layers", "mm_layers", "rope_dim")
    }
    model.transformer = SeedVR2Transformer(**{**overrides, **TINY_SEEDVR2})
    model.vae = TinyVAE(16, 8)
    return model


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------
# family_key -> (builder, kind) ; kind in {"t2i", "kontext", "fill", "edit_paths", "fibo_edit", "fibo2_edit",
#                                         "qwen_edit", "qwen21_edit", "flux3_edit", "upscale"}
FAMILIES = {
    "flux1-schnell": (build_flux1, "t2i"),
    "flux1-dev": (build_flux1, "t2i"),
    "flux1-krea-dev": (build_flux1, "t2i"),
    "flux2-klein-4b": (build_flux2, "t2i"),
    "flux2-klein-9b": (build_flux2, "t2i"),
    "flux2-klein-base-4b": (build_flux2, "t2i"),
    "flux2-klein-base-9b": (build_flux2, "t2i"),
    "flux3-klein": (build_flux3, "t2i"),
    "flux3-klein-base": (build_flux3, "t2i"),
    "z-image-turbo": (build_zimage, "t2i"),
    "z-image": (build_zimage, "t2i"),
    "qwen-image": (build_qwen, "t2i"),
    "qwen-image-2.1": (build_qwen21, "t2i"),
    "qwen-image-2.1-turbo": (build_qwen21, "t2i"),
    "krea-2": (build_krea2, "t2i"),
    "krea-2-raw": (build_krea2, "t2i"),
    "fibo": (build_fibo, "t2i"),
    "fibo-lite": (build_fibo, "t2i"),
    "fibo2": (build_fibo2, "t2i"),
    "ernie-image": (build_ernie, "t2i"),
    "ernie-image-turbo": (build_ernie, "t2i"),
    "ideogram-4": (build_ideogram4, "t2i"),
    "iris-3b": (build_iris, "t2i"),
    "iris-3b-base": (build_iris, "t2i"),
    "lens-turbo": (build_lens, "t2i"),
    "ming-image-design": (build_ming, "t2i"),
    "moss-image-sft": (build_moss, "t2i"),
    "moss-image-base": (build_moss, "t2i"),
    "boogu-image-turbo": (build_boogu, "t2i"),
    "anima-turbo": (build_anima, "t2i"),
    "anima-aesthetic": (build_anima, "t2i"),
    "anima-base": (build_anima, "t2i"),
    # image-input classes
    "kontext": (build_kontext, "kontext"),
    "fill": (build_fill, "fill"),
    "flux2-klein-edit": (build_flux2_edit, "edit_paths"),
    "flux2-klein-9b-kv-edit": (build_flux2_edit, "edit_paths"),
    "flux3-klein-edit": (build_flux3_edit, "flux3_edit"),
    "qwen-image-edit": (build_qwen_edit, "qwen_edit"),
    "qwen-image-edit-2511": (build_qwen_edit, "qwen_edit"),
    "qwen-image-2.1-edit": (build_qwen21_edit, "qwen21_edit"),
    "fibo-edit": (build_fibo_edit, "fibo_edit"),
    "fibo-edit-rmbg": (build_fibo_edit, "fibo_edit"),
    "fibo2-edit": (build_fibo2_edit, "fibo2_edit"),
    "seedvr2-3b": (build_seedvr2, "upscale"),
    "seedvr2-7b": (build_seedvr2, "upscale"),
}

PROMPTS = {
    "fibo": FIBO_PROMPT,
    "fibo-lite": FIBO_PROMPT,
    "fibo-edit": FIBO_EDIT_PROMPT,
    "fibo-edit-rmbg": FIBO_EDIT_PROMPT,
}

_KEY_FOR_BUILDER = {"ideogram-4": "ideogram-4-fp8"}


def build_tiny(family_key: str):
    builder, _ = FAMILIES[family_key]
    return builder(family_key)
