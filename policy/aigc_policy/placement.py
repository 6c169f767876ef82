"""Placements and how they are priced: the one home of the warm/cold and gang rules.

Every scheduler (heuristic or learned), the simulator and the operator price a placement with
`estimate`, and build gangs with `complete_gang`, so a decision means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from aigc_policy.snapshot import ClusterSnapshot, NodeState, PerfModel, TaskSpec

STEP_BUCKETS = 4


@dataclass(frozen=True, slots=True)
class Placement:
    """Run queue entry `task_index` on `nodes` (indices into snapshot.nodes) with `steps`."""

    task_index: int
    nodes: tuple[int, ...]
    steps: int

    @property
    def gang_size(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True, slots=True)
class Estimate:
    start_s: float
    service_s: float
    cold: bool
    quality: float
    transfer_s: float = 0.0  # input/result shipping: delays the answer, does not occupy the gang

    @property
    def finish_s(self) -> float:
        """When the gang is released."""
        return self.start_s + self.service_s

    @property
    def done_s(self) -> float:
        """When the user has the result."""
        return self.start_s + self.service_s + self.transfer_s


def allowed_gang_sizes(snapshot: ClusterSnapshot, task: TaskSpec) -> tuple[int, ...]:
    sizes = snapshot.gang_sizes if task.gang_sizes is None else task.gang_sizes
    return tuple(k for k in sizes if k in snapshot.gang_sizes)


def steps_for_bucket(task: TaskSpec, bucket: int, n_buckets: int = STEP_BUCKETS) -> int:
    if task.steps_fixed or n_buckets == 1:
        return task.max_steps
    span = task.max_steps - task.min_steps
    return task.min_steps + round(bucket * span / (n_buckets - 1))


def step_time(perf: PerfModel, task: TaskSpec, gpu_class: str, k: int) -> float:
    """Seconds per denoising step of `task` on one member of class `gpu_class` in a k-gang."""
    return task.work_scale * perf.step_seconds(gpu_class, task.model, task.width, task.height, k)


def min_acceptable_steps(perf: PerfModel, task: TaskSpec) -> int:
    """The fewest steps in the task's range that reach its quality floor.

    Without a floor the target is the best quality the range allows, so a quality-blind
    default never buys latency with an unusable image (EAT's curve is 0 below 5 steps).
    """
    if task.steps_fixed:
        return task.min_steps
    return _fewest_steps(perf, task.model, task.min_steps, task.max_steps, task.min_quality)


@lru_cache(maxsize=4096)
def _fewest_steps(perf: PerfModel, model: str, lo: int, hi: int, floor: float | None) -> int:
    qualities = [perf.quality(model, s) for s in range(lo, hi + 1)]
    target = max(qualities) if floor is None else min(floor, max(qualities))
    return next(lo + i for i, q in enumerate(qualities) if q >= target - 1e-12)


def transfer_seconds(snapshot: ClusterSnapshot, task: TaskSpec, members: list[NodeState]) -> float:
    """Ship the input to a gang away from the task's origin, and the result back (LAD-TS §2.2)."""
    if task.input_mbit <= 0.0 and task.output_mbit <= 0.0:
        return 0.0
    rates = [snapshot.perf.link_mbps(n.gpu_class) for n in members]
    if any(r is None for r in rates):
        return 0.0
    rate = min(rates)
    local = task.origin is None or any(n.name == task.origin for n in members)
    return (0.0 if local else task.input_mbit / rate) + task.output_mbit / rate


def node_can_run(snapshot: ClusterSnapshot, node: NodeState, task: TaskSpec, k: int) -> bool:
    return node.up and snapshot.perf.supports(node.gpu_class, task.model, task.width, task.height, k)


def is_warm(snapshot: ClusterSnapshot, task: TaskSpec, nodes: tuple[int, ...]) -> bool:
    members = [snapshot.nodes[i] for i in nodes]
    if snapshot.perf.reuse == "exact-group":
        group = (members[0].name,) if len(members) == 1 else tuple(sorted(n.name for n in members))
        return all(any(r.model == task.model and r.group == group for r in n.resident) for n in members)
    return all(any(r.model == task.model for r in n.resident) for n in members)


def estimate(snapshot: ClusterSnapshot, task: TaskSpec, nodes: tuple[int, ...], steps: int) -> Estimate:
    """Start, service time (slowest member paces the gang) and quality of a placement."""
    perf = snapshot.perf
    k = len(nodes)
    members = [snapshot.nodes[i] for i in nodes]
    start, step_s = snapshot.now, 0.0
    for n in members:  # a plain loop: this runs on every decision of every policy
        start = n.free_at if n.free_at > start else start
        s = step_time(perf, task, n.gpu_class, k)
        step_s = s if s > step_s else step_s
    cold = not is_warm(snapshot, task, nodes)
    load_s = max(perf.load_seconds(n.gpu_class, task.model, k) for n in members) if cold else 0.0
    transfer_s = transfer_seconds(snapshot, task, members)
    return Estimate(start, steps * step_s + load_s, cold, perf.quality(task.model, steps), transfer_s)


def _solo_finish(snapshot: ClusterSnapshot, task: TaskSpec, node: NodeState, k: int, steps: int) -> float:
    perf = snapshot.perf
    warm = any(r.model == task.model for r in node.resident)
    load = 0.0 if warm else perf.load_seconds(node.gpu_class, task.model, k)
    return max(snapshot.now, node.free_at) + load + steps * step_time(perf, task, node.gpu_class, k)


def complete_gang(snapshot: ClusterSnapshot, task: TaskSpec, k: int, anchor: int) -> tuple[int, ...] | None:
    """The k nodes a gang anchored at `anchor` runs on, or None if no such gang can run the task.

    Under exact-group reuse an anchor inside a live warm k-group of the task's model takes that
    group. Otherwise the anchor is joined by the k-1 other eligible nodes that would finish the
    task soonest on their own, ties broken by index, so the rule is deterministic everywhere.
    """
    nodes = snapshot.nodes
    if not node_can_run(snapshot, nodes[anchor], task, k):
        return None
    if k == 1:
        return (anchor,)
    if snapshot.perf.reuse == "exact-group":
        group = _warm_group(snapshot, task, anchor, k)
        if group is not None:
            return group
    steps = task.max_steps
    others = [
        (_solo_finish(snapshot, task, n, k, steps), i)
        for i, n in enumerate(nodes)
        if i != anchor and node_can_run(snapshot, n, task, k)
    ]
    if len(others) < k - 1:
        return None
    others.sort()
    return tuple(sorted([anchor, *(i for _, i in others[: k - 1])]))


def _warm_group(snapshot: ClusterSnapshot, task: TaskSpec, anchor: int, k: int) -> tuple[int, ...] | None:
    index = {n.name: i for i, n in enumerate(snapshot.nodes)}
    for r in snapshot.nodes[anchor].resident:
        if r.model == task.model and len(r.group) == k and all(name in index for name in r.group):
            members = tuple(sorted(index[name] for name in r.group))
            if all(node_can_run(snapshot, snapshot.nodes[i], task, k) for i in members):
                return members
    return None


def candidate_gangs(snapshot: ClusterSnapshot, task: TaskSpec) -> Iterator[tuple[int, tuple[int, ...]]]:
    """Every distinct (k, gang) reachable through `complete_gang` for this task."""
    seen: set[tuple[int, ...]] = set()
    for k in allowed_gang_sizes(snapshot, task):
        for anchor in range(len(snapshot.nodes)):
            gang = complete_gang(snapshot, task, k, anchor)
            if gang is not None and gang not in seen:
                seen.add(gang)
                yield k, gang


def earliest_finish(
    snapshot: ClusterSnapshot, task: TaskSpec, steps: int
) -> tuple[tuple[int, ...], Estimate] | None:
    """The candidate gang that hands the result back soonest, ties to the first found."""
    best: tuple[tuple[int, ...], Estimate] | None = None
    for _, gang in candidate_gangs(snapshot, task):
        est = estimate(snapshot, task, gang, steps)
        if best is None or est.done_s < best[1].done_s:
            best = (gang, est)
    return best
