"""Small helpers shared by the heuristic baselines."""

from __future__ import annotations

from aigc_policy.placement import allowed_gang_sizes, node_can_run
from aigc_policy.snapshot import ClusterSnapshot, TaskSpec


def smallest_gang(snap: ClusterSnapshot, task: TaskSpec) -> tuple[int, list[int]] | None:
    """The smallest allowed gang size with enough eligible nodes, and those nodes."""
    for k in sorted(allowed_gang_sizes(snap, task)):
        eligible = [i for i, n in enumerate(snap.nodes) if node_can_run(snap, n, task, k)]
        if len(eligible) >= k:
            return k, eligible
    return None


def priority_head(snap: ClusterSnapshot) -> int:
    """Highest priority first, FIFO within a priority."""
    queue = snap.queue
    best = 0
    for i in range(1, len(queue)):
        if queue[i].priority > queue[best].priority:
            best = i
    return best
