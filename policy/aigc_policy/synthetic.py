"""Random but plausible snapshots of any size, for latency measurement and property tests.

A simulator run visits only the cluster sizes of its scenario; these states cover any node
count and queue length with a mix of busy, down, warm and cold nodes, deadlines and step ranges.
"""

from __future__ import annotations

import numpy as np

from aigc_policy.perf import TablePerfModel
from aigc_policy.snapshot import GANG_SIZES, ClusterSnapshot, NodeState, Resident, TaskSpec


def random_snapshot(
    rng: np.random.Generator,
    perf: TablePerfModel,
    n_nodes: int,
    n_tasks: int,
    gang_sizes: tuple[int, ...] = GANG_SIZES,
) -> ClusterSnapshot:
    now = float(rng.uniform(0.0, 500.0))
    nodes = [_random_node(rng, perf, f"n{j}", now) for j in range(n_nodes)]
    _share_groups(rng, nodes, gang_sizes)
    queue = [_random_task(rng, perf, f"t{i}", now, gang_sizes) for i in range(n_tasks)]
    return ClusterSnapshot(now, queue, nodes, perf, gang_sizes, has_future_events=bool(rng.random() < 0.9))


def next_snapshot(rng: np.random.Generator, snap: ClusterSnapshot, new_tasks: int = 1) -> ClusterSnapshot:
    """The state at a live cluster's next decision: the same nodes (names, GPU classes) with fresh
    busy, up, residency and metrics state, and the queue with `new_tasks` of its tasks gone
    (placed) and as many new arrivals at the back, so most tasks were seen at the last decision."""
    now = snap.now + float(rng.exponential(1.0))
    perf = snap.perf
    assert isinstance(perf, TablePerfModel)
    nodes = [_random_node(rng, perf, nd.name, now, nd.gpu_class) for nd in snap.nodes]
    _share_groups(rng, nodes, snap.gang_sizes)
    gone = set(rng.choice(len(snap.queue), min(new_tasks, len(snap.queue)), replace=False).tolist())
    queue = [t for i, t in enumerate(snap.queue) if i not in gone]
    first = int(rng.integers(1 << 40))
    queue += [_random_task(rng, perf, f"t{first + i}", now, snap.gang_sizes) for i in range(len(gone))]
    return ClusterSnapshot(now, queue, nodes, perf, snap.gang_sizes, has_future_events=bool(rng.random() < 0.9))


def _random_node(rng: np.random.Generator, perf: TablePerfModel, name: str, now: float, gpu_class: str | None = None) -> NodeState:
    resident = [Resident(str(m), (name,)) for m in rng.choice(sorted(perf.models), rng.integers(0, 3))]
    return NodeState(
        name=name,
        gpu_class=gpu_class or str(rng.choice(sorted(perf.classes))),
        up=bool(rng.random() > 0.05),
        free_at=now + float(rng.exponential(10.0)) * float(rng.random() < 0.5),
        resident=resident,
        metrics_age_s=float(rng.exponential(2.0)),
        inflight=int(rng.integers(0, 3)),
    )


def _random_task(rng: np.random.Generator, perf: TablePerfModel, task_id: str, now: float, gang_sizes: tuple[int, ...]) -> TaskSpec:
    spec = perf.models[str(rng.choice(sorted(perf.models)))]
    lo = int(rng.integers(spec.min_steps, spec.max_steps + 1))
    size = int(rng.choice([512, 768, 1024]))
    return TaskSpec(
        id=task_id,
        arrival_s=now - float(rng.exponential(15.0)),
        model=spec.name,
        width=size,
        height=size,
        min_steps=lo,
        max_steps=int(rng.integers(lo, spec.max_steps + 1)),
        deadline_s=float(rng.uniform(5, 120)) if rng.random() < 0.7 else None,
        min_quality=float(rng.uniform(0.0, 0.8)) if rng.random() < 0.5 else None,
        gang_sizes=tuple(sorted(rng.choice(gang_sizes, rng.integers(1, len(gang_sizes) + 1), replace=False).tolist()))
        if rng.random() < 0.3
        else None,
        priority=int(rng.integers(0, 3)),
    )


def _share_groups(rng: np.random.Generator, nodes: list[NodeState], gang_sizes: tuple[int, ...]) -> None:
    """Turn a few disjoint node sets into warm k-groups sharing one model."""
    order = [int(j) for j in rng.permutation(len(nodes))]
    for k in gang_sizes:
        if k == 1 or len(order) < k or rng.random() < 0.5:
            continue
        members, order = order[:k], order[k:]
        if not nodes[members[0]].resident:
            continue
        model = nodes[members[0]].resident[0].model
        group = tuple(sorted(nodes[j].name for j in members))
        for j in members:
            nodes[j].resident = [Resident(model, group)]
