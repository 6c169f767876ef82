"""Tiny randomly initialised pipelines of every catalog kind, saved like real checkpoints.

No weights can be downloaded here, so tests and the demo build these and load them back through
the same catalog path real models take (`from_pretrained`, safetensors only). They are sized so
that a 64x64 image in a few steps takes well under a second on one CPU core.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    PNDMScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from aigc_worker.catalog import catalog_yaml

TINY_KINDS: tuple[str, ...] = ("sd15", "sd21", "sd-turbo", "sdxl", "sd3-medium")
CATALOG_FILE = "catalog.yaml"
TINY_VRAM_GB = 0.1  # declared budget share: a 1 GB budget keeps all tiny kinds warm
TEXT_WIDTH = 32
VOCAB_SIZE = 1000
# The VAE downsamples by 2, so 64x64 images have 32x32 latents: room for 4 row patches at
# every UNet level (32 -> 16 rows).
TINY_VAE_BLOCKS = (16, 32)


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable-unicode table (the BPE alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def write_tokenizer(directory: Path, merges: tuple[str, ...] = ("t h", "th e</w>", "a n", "i n")) -> None:
    """A byte-level CLIP BPE vocabulary: every byte alone and word-final, specials, a few merges."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _tokenizer(directory: Path) -> CLIPTokenizer:
    write_tokenizer(directory)
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)


def _text_config(projection_dim: int = TEXT_WIDTH) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=TEXT_WIDTH,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=VOCAB_SIZE,
        projection_dim=projection_dim,
    )


def _vae(**overrides: object) -> AutoencoderKL:
    config: dict[str, object] = {
        "block_out_channels": TINY_VAE_BLOCKS,
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * len(TINY_VAE_BLOCKS),
        "up_block_types": ("UpDecoderBlock2D",) * len(TINY_VAE_BLOCKS),
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 64,
    }
    config.update(overrides)
    return AutoencoderKL(**config)


def _unet(cross_attention_dim: int, **overrides: object) -> UNet2DConditionModel:
    config: dict[str, object] = {
        "block_out_channels": (16, 32),
        "layers_per_block": 1,
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 4,
        "norm_num_groups": 8,
    }
    config.update(overrides)
    return UNet2DConditionModel(**config)


def build_sd(kind: str, work: Path) -> StableDiffusionPipeline:
    """sd15 (conv projections, epsilon), sd21 (linear projections, v-prediction), sd-turbo."""
    second_generation = kind in ("sd21", "sd-turbo")
    unet = _unet(TEXT_WIDTH, use_linear_projection=second_generation)
    scheduler_config = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
    }
    if kind == "sd15":
        scheduler = PNDMScheduler(skip_prk_steps=True, **scheduler_config)
    elif kind == "sd21":
        scheduler = EulerDiscreteScheduler(prediction_type="v_prediction", **scheduler_config)
    else:
        scheduler = EulerDiscreteScheduler(timestep_spacing="trailing", **scheduler_config)
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=_tokenizer(work / "tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl(work: Path) -> StableDiffusionXLPipeline:
    time_embed_dim = 8
    unet = _unet(
        2 * TEXT_WIDTH,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + TEXT_WIDTH,
    )
    tokenizer = _tokenizer(work / "tokenizer")
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_text_config()),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
        ),
    )


def build_sd3_without_t5(work: Path) -> StableDiffusion3Pipeline:
    """SD3 as reSD3-medium deploys it: CLIP-L and CLIP-G only, no T5 encoder or tokenizer."""
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_projection_dim=16,
        joint_attention_dim=2 * TEXT_WIDTH,
        pooled_projection_dim=2 * TEXT_WIDTH,
        out_channels=4,
    )
    tokenizer = _tokenizer(work / "tokenizer")
    vae = _vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=CLIPTextModelWithProjection(_text_config()),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_text_config()),
        tokenizer_2=tokenizer,
        text_encoder_3=None,
        tokenizer_3=None,
    )


def build_tiny_pipeline(kind: str, work: Path):  # noqa: ANN201 - one of several pipeline classes
    if kind in ("sd15", "sd21", "sd-turbo"):
        return build_sd(kind, work)
    if kind == "sdxl":
        return build_sdxl(work)
    if kind == "sd3-medium":
        return build_sd3_without_t5(work)
    raise ValueError(f"no tiny pipeline for kind {kind!r}")


def tiny_model_name(kind: str) -> str:
    return f"tiny-{kind}"


def write_tiny_models(out: Path, kinds: tuple[str, ...] = TINY_KINDS, seed: int = 0) -> dict[str, Path]:
    """Save one tiny pipeline per kind under `out/<name>` (safetensors) and `out/catalog.yaml`
    listing them; returns name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for index, kind in enumerate(kinds):
        torch.manual_seed(seed + index)
        name = tiny_model_name(kind)
        target = out / name
        pipeline = build_tiny_pipeline(kind, out / ".build" / name)
        pipeline.save_pretrained(target, safe_serialization=True)
        paths[name] = target
    entries = [
        {
            "name": tiny_model_name(kind),
            "source": f"file://{paths[tiny_model_name(kind)].resolve()}",
            "pipeline": kind,
            "vramGb": TINY_VRAM_GB,
        }
        for kind in kinds
    ]
    (out / CATALOG_FILE).write_text(catalog_yaml(entries))
    shutil.rmtree(out / ".build", ignore_errors=True)
    return paths
