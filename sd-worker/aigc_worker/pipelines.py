"""Pipeline kinds of the catalog: how each is loaded from its weights and run for one image."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from aigc_api.catalog import ModelEntry
from diffusers import (
    DiffusionPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from torch import nn

from aigc_worker.parallel.layout import GangLayout, plan_layout
from aigc_worker.parallel.rendezvous import Gang
from aigc_worker.parallel.split import gang_denoiser


@dataclass(frozen=True, slots=True)
class PipelineKind:
    pipeline_class: type[DiffusionPipeline]
    denoiser: str  # attribute holding the network called once per step
    default_guidance: float
    load_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def row_patchable(self) -> bool:
        return self.denoiser == "unet"


_SD = {"safety_checker": None, "requires_safety_checker": False}

PIPELINE_KINDS: dict[str, PipelineKind] = {
    "sd15": PipelineKind(StableDiffusionPipeline, "unet", 7.5, _SD),
    "sd21": PipelineKind(StableDiffusionPipeline, "unet", 7.5, _SD),
    "tiny-sd": PipelineKind(StableDiffusionPipeline, "unet", 7.5, _SD),
    "sd-turbo": PipelineKind(StableDiffusionPipeline, "unet", 0.0, _SD),
    "sdxl": PipelineKind(StableDiffusionXLPipeline, "unet", 5.0),
    "sdxl-turbo": PipelineKind(StableDiffusionXLPipeline, "unet", 0.0),
    # reSD3-medium: SD3 without the T5-XXL encoder (CLIP-L + CLIP-G conditioning only).
    "sd3-medium": PipelineKind(
        StableDiffusion3Pipeline, "transformer", 5.0, {"text_encoder_3": None, "tokenizer_3": None}
    ),
}


class ModelLoadError(RuntimeError):
    """The model's files are missing, corrupt or not of the catalog's pipeline kind."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where pipelines run: device and dtype (cuda+float16 on GPUs, cpu+float32 here)."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    @classmethod
    def parse(cls, device: str, dtype: str) -> Placement:
        dtypes = {
            "float32": torch.float32,
            "fp32": torch.float32,
            "float16": torch.float16,
            "fp16": torch.float16,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
        }
        return cls(device, dtypes[dtype])


@dataclass
class LoadedModel:
    entry: ModelEntry
    kind: PipelineKind
    pipeline: DiffusionPipeline

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self.pipeline, self.kind.denoiser)


def load_model(entry: ModelEntry, placement: Placement, local_files_only: bool = False) -> LoadedModel:
    kind = PIPELINE_KINDS.get(entry.pipeline)
    if kind is None:
        raise ModelLoadError(
            f"{entry.name}: pipeline kind {entry.pipeline!r} is not supported by this worker"
        )
    source = entry.source.removeprefix("file://")
    try:
        pipeline = kind.pipeline_class.from_pretrained(
            source,
            dtype=placement.dtype,
            use_safetensors=True,
            revision=entry.revision,
            local_files_only=local_files_only,
            **kind.load_kwargs,
        )
        pipeline.to(placement.device)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # diffusers/safetensors/hub raise many unrelated types for a bad checkpoint
        raise ModelLoadError(f"{entry.name}: cannot load {entry.source}: {exc}") from exc
    pipeline.set_progress_bar_config(disable=True)
    return LoadedModel(entry, kind, pipeline)


@dataclass(frozen=True, slots=True)
class ImageJob:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    seed: int
    guidance_scale: float | None = None  # None: the kind's default


@dataclass
class Generated:
    image: Any  # float array HxWx3 in [0, 1] on the rank that decodes, None elsewhere
    seconds: float
    step_seconds: float


def guidance_of(model: LoadedModel, job: ImageJob) -> float:
    return model.kind.default_guidance if job.guidance_scale is None else job.guidance_scale


def gang_layout(model: LoadedModel, job: ImageJob, world_size: int, rank: int) -> GangLayout:
    """How this model and image divide over a gang (raises GangLayoutError if they cannot)."""
    scale = model.pipeline.vae_scale_factor
    denoiser = model.denoiser
    downsamplers = len(denoiser.config.block_out_channels) - 1 if model.kind.row_patchable else 0
    return plan_layout(
        world_size,
        rank,
        uses_cfg=guidance_of(model, job) > 1.0,
        patchable=model.kind.row_patchable,
        latent_height=job.height // scale,
        row_multiple=2**downsamplers,
    )


def generate(model: LoadedModel, job: ImageJob, gang: Gang | None = None) -> Generated:
    """One image; in a gang every member calls this and only rank 0 decodes the image."""
    pipeline = model.pipeline
    decodes = gang is None or gang.layout.rank == 0
    step_ends: list[float] = []

    def on_step_end(_pipe: Any, _step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        step_ends.append(time.perf_counter())
        return tensors

    kwargs: dict[str, Any] = {
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt or None,
        "width": job.width,
        "height": job.height,
        "num_inference_steps": job.steps,
        "guidance_scale": guidance_of(model, job),
        "generator": torch.Generator("cpu").manual_seed(job.seed),
        "output_type": "np" if decodes else "latent",
        "callback_on_step_end": on_step_end,
    }
    start = time.perf_counter()
    with torch.inference_mode():
        if gang is None:
            output = pipeline(**kwargs)
        else:
            with gang_denoiser(model.denoiser, gang.layout, gang.patches):
                output = pipeline(**kwargs)
    seconds = time.perf_counter() - start
    if len(step_ends) > 1:
        step_seconds = (step_ends[-1] - step_ends[0]) / (len(step_ends) - 1)
    else:
        step_seconds = seconds / max(job.steps, 1)
    return Generated(output.images[0] if decodes else None, seconds, step_seconds)
