"""One decision batch: ask the policy repeatedly over a snapshot that absorbs each placement.

Runs in a worker thread (ONNX inference and pricing are CPU-bound). Each placement is priced
with `placement.estimate`, and its gang's `free_at`, `inflight` and residency are advanced before
the next decision, so one batch never stacks tasks on a node that only looked idle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from aigc_policy.placement import candidate_gangs, estimate
from aigc_policy.scheduler import Scheduler
from aigc_policy.snapshot import GANG_SIZES, ClusterSnapshot, NodeState, PerfModel, Resident, TaskSpec


@dataclass(frozen=True, slots=True)
class Decision:
    task: TaskSpec
    nodes: tuple[str, ...]
    steps: int
    service_s: float
    inputs_age_s: float  # oldest metrics age among the gang's nodes
    inference_s: float


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    decisions: list[Decision]
    unplaceable: list[TaskSpec]  # no node of the cluster can run them as asked
    waiting: list[TaskSpec]  # the policy chose to wait
    nodes: list[NodeState]  # the node view after the batch's placements


def runnable_somewhere(snapshot: ClusterSnapshot, task: TaskSpec) -> bool:
    return next(candidate_gangs(snapshot, task), None) is not None


def never_runnable(perf: PerfModel, task: TaskSpec, gang_sizes: tuple[int, ...] = GANG_SIZES) -> str | None:
    """Why no GPU class of the perf profile can ever run `task` (None: some class can).

    A static property of the task and the profile, not of the current load: such a task fails
    fast instead of waiting forever. A profile that does not list its classes is never judged.
    """
    classes = tuple(getattr(perf, "classes", None) or ())
    if not classes:
        return None
    sizes = gang_sizes if task.gang_sizes is None else tuple(k for k in task.gang_sizes if k in gang_sizes)
    if not sizes:
        allowed = ",".join(str(k) for k in gang_sizes)
        return f"gang size(s) {list(task.gang_sizes or ())} are not among the supported {allowed}"
    for gpu_class in classes:
        if any(perf.supports(gpu_class, task.model, task.width, task.height, k) for k in sizes):
            return None
    return (
        f"no GPU class of the perf profile ({', '.join(classes)}) supports model {task.model} at "
        f"{task.width}x{task.height} with gang size(s) {','.join(str(k) for k in sizes)}"
    )


def decide_batch(
    policy: Scheduler, tasks: Sequence[TaskSpec], nodes: list[NodeState], perf: PerfModel, now: float
) -> BatchOutcome:
    probe = ClusterSnapshot(now=now, queue=(), nodes=nodes, perf=perf)
    queue: list[TaskSpec] = []
    unplaceable: list[TaskSpec] = []
    for task in tasks:
        (queue if runnable_somewhere(probe, task) else unplaceable).append(task)
    decisions: list[Decision] = []
    while queue and nodes:
        snap = ClusterSnapshot(
            now=now,
            queue=queue,
            nodes=nodes,
            perf=perf,
            has_future_events=any(n.free_at > now for n in nodes),
        )
        started = time.perf_counter()
        placement = policy.decide(snap)
        inference_s = time.perf_counter() - started
        if placement is None:
            break
        task = queue.pop(placement.task_index)
        est = estimate(snap, task, placement.nodes, placement.steps)
        members = [nodes[i] for i in placement.nodes]
        group = tuple(sorted(n.name for n in members))
        for i in placement.nodes:
            _occupy(nodes, i, est.finish_s, Resident(task.model, group))
        decisions.append(
            Decision(
                task=task,
                nodes=tuple(n.name for n in members),
                steps=placement.steps,
                service_s=est.service_s,
                inputs_age_s=max(n.metrics_age_s for n in members),
                inference_s=inference_s,
            )
        )
    return BatchOutcome(decisions, unplaceable, queue, nodes)


def _occupy(nodes: list[NodeState], index: int, until: float, resident: Resident) -> None:
    node = nodes[index]
    kept = [r for r in node.resident if r != resident]
    nodes[index] = replace(node, free_at=until, inflight=node.inflight + 1, resident=[*kept, resident])
