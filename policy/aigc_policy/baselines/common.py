"""Small helpers shared by the heuristic baselines."""

from __future__ import annotations

from collections.abc import Callable

from aigc_policy.placement import (
    Placement,
    allowed_gang_sizes,
    complete_gang,
    eligible_nodes,
    min_acceptable_steps,
)
from aigc_policy.snapshot import ClusterSnapshot, TaskSpec


def smallest_gang(snap: ClusterSnapshot, task: TaskSpec) -> tuple[int, list[int]] | None:
    """The smallest allowed gang size with enough eligible nodes, and those nodes."""
    for k in allowed_gang_sizes(snap, task):
        eligible = eligible_nodes(snap, task, k)
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


AnchorRule = Callable[[ClusterSnapshot, TaskSpec, int, list[int]], int]


def place_head(snap: ClusterSnapshot, pick_anchor: AnchorRule) -> Placement | None:
    """The FIFO head on its smallest allowed gang, anchored where `pick_anchor` says, at the
    fewest steps that meet its quality floor: the shape every placement-only baseline shares."""
    task = snap.queue[0]
    found = smallest_gang(snap, task)
    if found is None:
        return None
    k, eligible = found
    gang = complete_gang(snap, task, k, pick_anchor(snap, task, k, eligible), eligible)
    return None if gang is None else Placement(0, gang, min_acceptable_steps(snap.perf, task))


def option_number(policy: str, key: str, value: str, minimum: float = 0.0, whole: bool = False) -> float:
    """The number of one `key=value` option of a policy spec, or a message naming what is wrong."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{policy}: {key}={value!r} is not a number") from None
    if number < minimum or (whole and not number.is_integer()):
        kind = "whole number" if whole else "number"
        raise ValueError(f"{policy}: {key}={value} is out of range (a {kind} >= {minimum:g})")
    return number
