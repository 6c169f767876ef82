"""Action layout of the learned policies and its decoding into a Placement.

One flat masked discrete action per decision, plus a steps-bucket choice for the chosen task:

  index 0                         wait (masked when the snapshot has no future events)
  index 1 + (i * G + g) * N + j   run visible task i as a gang of GANG_SIZES[g] nodes anchored at
                                  node j; the gang is completed by placement.complete_gang
  bucket b in 0..STEP_BUCKETS-1   steps = bucket_steps(perf, task)[b]: bucket 0 is the fewest steps
                                  that meet the task's quality floor (placement.min_acceptable_steps,
                                  what the heuristics run), the others spread up to max_steps; fewer
                                  steps would fail the SLO, so they are not offered

N is the snapshot's node count and Q its visible queue length, so the layout follows the cluster
size. Masks come from features.Encoder; an index the mask rejects is an error here, never a no-op.
"""

from __future__ import annotations

import numpy as np

from aigc_policy.placement import (
    STEP_BUCKETS,
    Placement,
    complete_gang,
    min_acceptable_steps,
    steps_for_bucket,
)
from aigc_policy.snapshot import GANG_SIZES, ClusterSnapshot, PerfModel, TaskSpec

WAIT = 0
ACTION_LAYOUT = (
    f"v1:wait+task*gang*anchor;gang_sizes={','.join(map(str, GANG_SIZES))};step_buckets={STEP_BUCKETS}"
)


class InvalidAction(ValueError):
    """The action does not decode to a placement on this snapshot."""


def action_count(n_tasks: int, n_nodes: int) -> int:
    return 1 + n_tasks * len(GANG_SIZES) * n_nodes


def bucket_steps(perf: PerfModel, task: TaskSpec) -> list[int]:
    """Step count of each bucket (repeats when the range is narrow)."""
    lo, hi = min_acceptable_steps(perf, task), task.max_steps
    return [steps_for_bucket(lo, hi, b) for b in range(STEP_BUCKETS)]


def action_index(task: int, gang: int, anchor: int, n_nodes: int) -> int:
    return 1 + (task * len(GANG_SIZES) + gang) * n_nodes + anchor


def split_action(action: int, n_nodes: int) -> tuple[int, int, int]:
    """(task index, gang-size index, anchor node) of a non-wait action."""
    rest, anchor = divmod(action - 1, n_nodes)
    task, gang = divmod(rest, len(GANG_SIZES))
    return task, gang, anchor


def greedy_action(logits: np.ndarray) -> int:
    """The deterministic choice from masked logits [A]: wait when waiting is at least as likely as
    placing anything at all, else the most likely placement.

    A plain arg-max over the flat layout compares one action (wait) against each placement on its
    own; a policy sure it must place, but torn between anchors or tasks, would then wait.
    """
    if logits.size == 1:
        return WAIT
    place = int(logits[1:].argmax()) + 1
    if logits[place] > logits[WAIT]:  # one placement alone outweighs waiting: skip the sum
        return place
    mass = np.exp(logits.astype(np.float64) - float(logits[WAIT]))  # wait is the maximum here
    return WAIT if mass[WAIT] >= mass[1:].sum() else place


def decode(snap: ClusterSnapshot, action: int, bucket: int) -> Placement | None:
    """The placement an action stands for; None for wait."""
    if action == WAIT:
        if not snap.has_future_events:
            raise InvalidAction("wait chosen although nothing else will happen")
        return None
    task_index, gang, anchor = split_action(action, len(snap.nodes))
    if not (0 <= task_index < len(snap.queue) and 0 <= anchor < len(snap.nodes)):
        raise InvalidAction(f"action {action} is outside this snapshot")
    task = snap.queue[task_index]
    nodes = complete_gang(snap, task, GANG_SIZES[gang], anchor)
    if nodes is None:
        raise InvalidAction(f"action {action}: no gang of {GANG_SIZES[gang]} at node {anchor}")
    return Placement(task_index, nodes, bucket_steps(snap.perf, task)[bucket])


def encode(snap: ClusterSnapshot, placement: Placement | None) -> tuple[int, int] | None:
    """(action, bucket) that decodes to `placement`, or None if the layout cannot express it.

    Used to imitate a heuristic: its gang must be one complete_gang builds from some anchor,
    and its steps are rounded up to a bucket (never fewer steps, so a quality floor the
    heuristic met stays met).
    """
    if placement is None:
        return WAIT, 0
    task = snap.queue[placement.task_index]
    k = placement.gang_size
    if k not in GANG_SIZES:
        return None
    gang = GANG_SIZES.index(k)
    wanted = tuple(sorted(placement.nodes))
    for anchor in wanted:
        if complete_gang(snap, task, k, anchor) == wanted:
            steps = bucket_steps(snap.perf, task)
            bucket = next((b for b in range(STEP_BUCKETS) if steps[b] >= placement.steps), STEP_BUCKETS - 1)
            return action_index(placement.task_index, gang, anchor, len(snap.nodes)), bucket
    return None
