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
    classes = sorted(perf.classes)
    models = sorted(perf.models)
    nodes = []
    for j in range(n_nodes):
        resident = [Resident(str(m), (f"n{j}",)) for m in rng.choice(models, rng.integers(0, 3))]
        nodes.append(
            NodeState(
                name=f"n{j}",
                gpu_class=str(rng.choice(classes)),
                up=bool(rng.random() > 0.05),
                free_at=now + float(rng.exponential(10.0)) * float(rng.random() < 0.5),
                resident=resident,
                metrics_age_s=float(rng.exponential(2.0)),
                inflight=int(rng.integers(0, 3)),
            )
        )
    _share_groups(rng, nodes, gang_sizes)
    queue = []
    for i in range(n_tasks):
        spec = perf.models[str(rng.choice(models))]
        lo = int(rng.integers(spec.min_steps, spec.max_steps + 1))
        size = int(rng.choice([512, 768, 1024]))
        queue.append(
            TaskSpec(
                id=f"t{i}",
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
        )
    return ClusterSnapshot(now, queue, nodes, perf, gang_sizes, has_future_events=bool(rng.random() < 0.9))


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
