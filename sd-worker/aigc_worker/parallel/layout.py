"""Who computes what in a gang: the CFG half and the row patch of every rank."""

from __future__ import annotations

from dataclasses import dataclass


class GangLayoutError(ValueError):
    """This gang size cannot split this image (sizes not divisible, unsupported model)."""


@dataclass(frozen=True, slots=True)
class GangLayout:
    """Ranks are ordered cfg-major: rank = cfg_index * group_size + member_index.

    Inside one CFG group the first `patch_degree` members each own a row patch; any further
    members (a model without patch parallelism given more nodes than CFG halves) are replicas
    whose output is ignored.
    """

    world_size: int
    rank: int
    cfg_degree: int
    patch_degree: int

    @property
    def group_size(self) -> int:
        return self.world_size // self.cfg_degree

    @property
    def cfg_index(self) -> int:
        return self.rank // self.group_size

    @property
    def member_index(self) -> int:
        return self.rank % self.group_size

    @property
    def patch_index(self) -> int:
        return min(self.member_index, self.patch_degree - 1)

    def patch_group_ranks(self, cfg_index: int) -> list[int]:
        return [cfg_index * self.group_size + i for i in range(self.patch_degree)]

    def output_ranks(self) -> list[list[int]]:
        """For each CFG half (batch order), the ranks whose patches form it (row order)."""
        return [self.patch_group_ranks(c) for c in range(self.cfg_degree)]


def plan_layout(
    world_size: int, rank: int, uses_cfg: bool, patchable: bool, latent_height: int, row_multiple: int
) -> GangLayout:
    """Split CFG first (exact and communication-free but for one gather), then rows.

    `row_multiple` is how many latent rows one patch must hold a multiple of so that every
    down/upsampling level cuts at the same row boundaries (2 ** number of downsamplers).
    """
    if world_size < 1 or world_size & (world_size - 1):
        raise GangLayoutError(f"gang size {world_size} is not a power of two")
    cfg_degree = 2 if uses_cfg and world_size >= 2 else 1
    group_size = world_size // cfg_degree
    patch_degree = group_size if patchable else 1
    if patch_degree > 1 and latent_height % (patch_degree * row_multiple):
        raise GangLayoutError(
            f"latent height {latent_height} does not split into {patch_degree} patches "
            f"of a multiple of {row_multiple} rows"
        )
    return GangLayout(world_size, rank, cfg_degree, patch_degree)
