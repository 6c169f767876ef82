"""Replay of variable-size transitions and their collation into padded torch batches.

States differ in queue length and node count, so transitions are stored as EncodedState and
padded per batch; actions are stored as (task, gang, anchor) rather than as a flat index,
because the flat index depends on the (padded) node count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from aigc_policy.actions import WAIT, split_action
from aigc_policy.features import N_GANG, EncodedState


@dataclass(slots=True)
class Transition:
    state: EncodedState
    action: int  # flat index in the state's own layout
    bucket: int
    reward: float
    dt: float  # seconds to the next decision (SMDP discounting)
    next_state: EncodedState | None  # None: the episode ended


def _pad(arrays: Sequence[np.ndarray], shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
    out = np.zeros((len(arrays), *shape), dtype=dtype)
    for b, a in enumerate(arrays):
        out[(b, *(slice(0, s) for s in a.shape))] = a
    return torch.from_numpy(out)


def collate(states: Sequence[EncodedState]) -> dict[str, torch.Tensor]:
    """Pad to the largest queue and node count in the batch (at least one task slot)."""
    q = max(1, max(s.n_tasks for s in states))
    n = max(s.n_nodes for s in states)
    tasks = _pad([s.tasks for s in states], (q, states[0].tasks.shape[1]), np.float32)
    nodes = _pad([s.nodes for s in states], (n, states[0].nodes.shape[1]), np.float32)
    pairs = _pad([s.pairs for s in states], (q, n, *states[0].pairs.shape[2:]), np.float32)
    place = _pad([s.action_mask[1:].reshape(s.n_tasks, N_GANG, s.n_nodes) for s in states], (q, N_GANG, n), bool)
    wait = torch.tensor([bool(s.action_mask[0]) for s in states]).unsqueeze(1)
    return {
        "tasks": tasks,
        "nodes": nodes,
        "pairs": pairs,
        "task_mask": _pad([np.ones(s.n_tasks, bool) for s in states], (q,), bool),
        "node_mask": _pad([np.ones(s.n_nodes, bool) for s in states], (n,), bool),
        "action_mask": torch.cat([wait, place.flatten(1)], 1),
        "steps_mask": _pad([s.steps_mask for s in states], (q, states[0].steps_mask.shape[1]), bool),
    }


def padded_actions(states: Sequence[EncodedState], actions: Sequence[int], n_nodes: int) -> torch.Tensor:
    """Flat action indices re-expressed in a batch padded to `n_nodes` nodes."""
    out = []
    for s, a in zip(states, actions, strict=True):
        if a == WAIT:
            out.append(WAIT)
            continue
        task, gang, anchor = split_action(a, s.n_nodes)
        out.append(1 + (task * N_GANG + gang) * n_nodes + anchor)
    return torch.tensor(out, dtype=torch.long)


class Replay:
    """A ring buffer of transitions, sampled uniformly."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.items: list[Transition] = []
        self.cursor = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, t: Transition) -> None:
        if len(self.items) < self.capacity:
            self.items.append(t)
        else:
            self.items[self.cursor] = t
        self.cursor = (self.cursor + 1) % self.capacity

    def sample(self, size: int) -> list[Transition]:
        return [self.items[i] for i in self.rng.integers(0, len(self.items), size)]
