"""Exact row-patch parallelism inside a UNet, by wrapping its submodules.

Each rank of a patch group holds the same number of consecutive latent rows. Three kinds of
layer see beyond their own rows, and each wrapper restores exactly what a single device computes:

* 3x3 convolutions (including the stride-2 downsamplers and the convolution after each nearest
  upsampling) need `padding` rows above and below: taken from the neighbours' edges, zeros at the
  image border, then the convolution runs with no row padding of its own.
* GroupNorm needs statistics over the whole image: the per-group sum, then the per-group sum of
  squared deviations, are all-reduced (two passes, as numerically stable as the local op).
* Self-attention needs every token's key and value: `to_k`/`to_v` outputs are all-gathered along
  the token axis; row patches are contiguous runs of the row-major token sequence.

Everything else in a UNet (1x1 convolutions, linear layers, LayerNorm, cross-attention to the
text, nearest upsampling) is row-local already.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn


class PatchGroup:
    """Collectives among the ranks that share one image's row patches."""

    def __init__(self, group: dist.ProcessGroup | None, index: int, size: int) -> None:
        self.group = group
        self.index = index
        self.size = size

    def all_gather(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return torch.cat(parts, dim=dim)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor

    def with_neighbour_rows(self, x: torch.Tensor, halo: int) -> torch.Tensor:
        """`x` with `halo` rows of the patch above and below prepended/appended (zeros at borders)."""
        edges = torch.cat([x[..., :halo, :], x[..., -halo:, :]], dim=-2).contiguous()
        gathered = [torch.empty_like(edges) for _ in range(self.size)]
        dist.all_gather(gathered, edges, group=self.group)
        zeros = torch.zeros_like(edges[..., :halo, :])
        above = gathered[self.index - 1][..., halo:, :] if self.index > 0 else zeros
        below = gathered[self.index + 1][..., :halo, :] if self.index < self.size - 1 else zeros
        return torch.cat([above, x, below], dim=-2)


class HaloConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, patches: PatchGroup) -> None:
        super().__init__()
        kernel_rows, (pad_rows, pad_cols) = conv.kernel_size[0], _pair(conv.padding)
        if conv.padding_mode != "zeros" or conv.dilation[0] != 1 or kernel_rows != 2 * pad_rows + 1:
            raise ValueError(f"row patches cannot reproduce {conv}")
        self.inner = conv
        self.patches = patches
        self.halo = pad_rows
        self.col_padding = pad_cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.halo == 0:
            return self.inner(x)
        conv = self.inner
        padded = self.patches.with_neighbour_rows(x, self.halo)
        return F.conv2d(
            padded, conv.weight, conv.bias, conv.stride, (0, self.col_padding), conv.dilation, conv.groups
        )


class GlobalGroupNorm(nn.Module):
    def __init__(self, norm: nn.GroupNorm, patches: PatchGroup) -> None:
        super().__init__()
        self.inner = norm
        self.patches = patches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.inner
        # Statistics in float32 so fp16 sums over a whole image cannot overflow.
        grouped = x.reshape(x.shape[0], norm.num_groups, -1).float()
        count = grouped.shape[-1] * self.patches.size
        mean = self.patches.all_reduce_sum(grouped.sum(dim=-1, keepdim=True)) / count
        centred = grouped - mean
        variance = self.patches.all_reduce_sum(centred.square().sum(dim=-1, keepdim=True)) / count
        normalised = (centred * torch.rsqrt(variance + norm.eps)).reshape(x.shape).to(x.dtype)
        if not norm.affine:
            return normalised
        affine_shape = (1, -1) + (1,) * (x.ndim - 2)
        return normalised * norm.weight.reshape(affine_shape) + norm.bias.reshape(affine_shape)


class AllTokens(nn.Module):
    """A key/value projection whose output covers every patch's tokens."""

    def __init__(self, projection: nn.Module, patches: PatchGroup) -> None:
        super().__init__()
        self.inner = projection
        self.patches = patches

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.patches.all_gather(self.inner(hidden_states), dim=1)


def _pair(value: int | tuple[int, ...] | str) -> tuple[int, int]:
    if isinstance(value, str):
        raise ValueError(f"string padding {value!r} is not supported on row patches")
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _wrappers(unet: nn.Module, patches: PatchGroup) -> list[tuple[nn.Module, str, nn.Module]]:
    replacements: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in unet.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                replacements.append((parent, name, HaloConv2d(child, patches)))
            elif isinstance(child, nn.GroupNorm):
                replacements.append((parent, name, GlobalGroupNorm(child, patches)))
        if isinstance(parent, Attention) and not parent.is_cross_attention:
            replacements.append((parent, "to_k", AllTokens(parent.to_k, patches)))
            replacements.append((parent, "to_v", AllTokens(parent.to_v, patches)))
    return replacements


@contextmanager
def row_patches(unet: nn.Module, patches: PatchGroup) -> Iterator[None]:
    """Run `unet` on this rank's row patch exactly; the original modules are put back on exit."""
    replacements = _wrappers(unet, patches)
    for parent, name, wrapper in replacements:
        setattr(parent, name, wrapper)
    try:
        yield
    finally:
        for parent, name, wrapper in reversed(replacements):
            setattr(parent, name, wrapper.inner)
