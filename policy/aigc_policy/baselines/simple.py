"""Placement-only baselines: FIFO head task, its minimum acceptable steps, a simple node rule."""

from __future__ import annotations

import random

from aigc_policy.baselines.common import place_head
from aigc_policy.placement import (
    Placement,
    allowed_gang_sizes,
    complete_gang,
    eligible_nodes,
    step_time,
)
from aigc_policy.snapshot import ClusterSnapshot, TaskSpec


class _Seeded:
    """A scheduler that draws from its own RNG, re-seeded per episode (common random numbers)."""

    def __init__(self) -> None:
        self.rng = random.Random(0)

    def reset(self, seed: int) -> None:
        self.rng = random.Random(seed)


class RandomScheduler(_Seeded):
    """EAT's Random: a uniform visible task, gang size, anchor node and step count."""

    name = "random"

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        rng = self.rng
        index = rng.randrange(len(snap.queue))
        task = snap.queue[index]
        feasible = []
        for k in allowed_gang_sizes(snap, task):
            eligible = eligible_nodes(snap, task, k)
            if len(eligible) >= k:
                feasible.append((k, eligible))
        if not feasible:
            return None
        k, eligible = rng.choice(feasible)
        gang = complete_gang(snap, task, k, rng.choice(eligible), eligible)
        if gang is None:
            return None
        return Placement(index, gang, rng.randint(task.min_steps, task.max_steps))


class RoundRobin:
    """Anchors rotate over the nodes; the gang is completed by the shared rule."""

    name = "round-robin"

    def __init__(self) -> None:
        self.next_node = 0

    def reset(self, seed: int) -> None:
        self.next_node = 0

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        return place_head(snap, self._anchor)

    def _anchor(self, snap: ClusterSnapshot, task: TaskSpec, k: int, eligible: list[int]) -> int:
        anchor = eligible[0]  # wrap around when no eligible index is at or after next_node
        for i in eligible:  # ascending
            if i >= self.next_node:
                anchor = i
                break
        self.next_node = (anchor + 1) % len(snap.nodes)
        return anchor


class LeastLoaded:
    """kube-scheduler's LeastAllocated analogue: the anchor with the fewest reserved tasks."""

    name = "least-loaded"

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        nodes = snap.nodes
        return place_head(
            snap,
            lambda s, t, k, eligible: min(eligible, key=lambda i: (nodes[i].inflight, nodes[i].free_at, i)),
        )


class CapacityRandom(_Seeded):
    """LAD-TS sanity baseline: anchor drawn with probability proportional to its speed on the task."""

    name = "capacity-random"

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        return place_head(snap, self._anchor)

    def _anchor(self, snap: ClusterSnapshot, task: TaskSpec, k: int, eligible: list[int]) -> int:
        speeds = [1.0 / step_time(snap.perf, task, snap.nodes[i].gpu_class, k) for i in eligible]
        return self.rng.choices(eligible, weights=speeds)[0]
