"""Cut the denoiser's inputs down to this rank's share and reassemble its full output.

Every rank runs the whole pipeline loop (text encoders, scheduler, VAE) on identical inputs, so
the latents stay identical everywhere; only the denoiser call is divided. Its output is
all-gathered each step, which makes every rank's next latent exactly the single-device one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from aigc_worker.parallel.layout import GangLayout
from aigc_worker.parallel.patch import PatchGroup, row_patches

SAMPLE_KEYWORDS = ("sample", "hidden_states")


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {key: _map_tensors(item, fn) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(_map_tensors(item, fn) for item in value)
    return value


def _sample_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    if args:
        return args[0]
    return next(kwargs[key] for key in SAMPLE_KEYWORDS if key in kwargs)


def _with_sample(args: tuple[Any, ...], kwargs: dict[str, Any], sample: torch.Tensor):  # noqa: ANN202
    if args:
        return (sample, *args[1:]), kwargs
    key = next(key for key in SAMPLE_KEYWORDS if key in kwargs)
    return args, {**kwargs, key: sample}


class DenoiserSplit:
    def __init__(self, layout: GangLayout) -> None:
        self.layout = layout

    def shard_inputs(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):  # noqa: ANN201
        layout = self.layout
        sample = _sample_of(args, kwargs)
        full_batch = sample.shape[0]
        if layout.cfg_degree > 1:
            half = full_batch // layout.cfg_degree
            start = layout.cfg_index * half

            def own_half(t: torch.Tensor) -> torch.Tensor:
                return t[start : start + half] if t.ndim and t.shape[0] == full_batch else t

            args, kwargs = _map_tensors(args, own_half), _map_tensors(kwargs, own_half)
            sample = _sample_of(args, kwargs)
        if layout.patch_degree > 1:
            rows = sample.shape[-2] // layout.patch_degree
            first = layout.patch_index * rows
            args, kwargs = _with_sample(args, kwargs, sample[..., first : first + rows, :])
        return args, kwargs

    def gather_output(self, _module: nn.Module, _args: Any, _kwargs: Any, output: Any) -> Any:
        local = output[0] if isinstance(output, tuple) else output.sample
        parts = [torch.empty_like(local) for _ in range(self.layout.world_size)]
        dist.all_gather(parts, local.contiguous())
        halves = [torch.cat([parts[r] for r in ranks], dim=-2) for ranks in self.layout.output_ranks()]
        full = torch.cat(halves, dim=0)
        if isinstance(output, tuple):
            return (full, *output[1:])
        output.sample = full
        return output


@contextmanager
def gang_denoiser(denoiser: nn.Module, layout: GangLayout, patches: PatchGroup | None) -> Iterator[None]:
    """While active, each call of `denoiser` computes this rank's share and returns the full result."""
    split = DenoiserSplit(layout)
    with ExitStack() as stack:
        if layout.patch_degree > 1:
            if patches is None:
                raise ValueError("a patch-parallel layout needs its patch group")
            stack.enter_context(row_patches(denoiser, patches))
        pre = denoiser.register_forward_pre_hook(split.shard_inputs, with_kwargs=True)
        stack.callback(pre.remove)
        post = denoiser.register_forward_hook(split.gather_output, with_kwargs=True)
        stack.callback(post.remove)
        yield
