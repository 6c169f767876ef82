"""Full-information greedy baselines built on placement.earliest_finish."""

from __future__ import annotations

from aigc_policy.baselines.common import priority_head
from aigc_policy.placement import (
    Placement,
    allowed_gang_sizes,
    earliest_finish,
    eligible_nodes,
    estimate,
    min_acceptable_steps,
)
from aigc_policy.snapshot import ClusterSnapshot


class EarliestFinish:
    """Highest-priority task, minimum acceptable steps, the gang (any size) that finishes first.

    Warm-aware because estimate() charges the cold-start load on non-resident gangs.
    """

    name = "eft"

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        index = priority_head(snap)
        task = snap.queue[index]
        steps = min_acceptable_steps(snap.perf, task)
        best = earliest_finish(snap, task, steps)
        return None if best is None else Placement(index, best[0], steps)


class OptTs:
    """LAD-TS's Opt-TS: per task in FIFO order, the single node with the smallest delay."""

    name = "opt-ts"

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        task = snap.queue[0]
        steps = min_acceptable_steps(snap.perf, task)
        if 1 not in allowed_gang_sizes(snap, task):  # a gang-only task: best gang instead
            best = earliest_finish(snap, task, steps)
            return None if best is None else Placement(0, best[0], steps)
        best_node, best_done = None, 0.0
        for i in eligible_nodes(snap, task, 1):
            done = estimate(snap, task, (i,), steps).done_s
            if best_node is None or done < best_done:
                best_node, best_done = i, done
        if best_node is None:
            return None
        return Placement(0, (best_node,), steps)
