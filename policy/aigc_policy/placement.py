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


@dataclass(slots=True)
class Estimate:
    start_s: float
    service_s: float  # steps * step_s + load_s
    cold: bool
    quality: float
    transfer_s: float = 0.0  # input/result shipping: delays the answer, does not occupy the gang
    step_s: float = 0.0  # seconds per step of the gang (its slowest member, work scale applied)
    load_s: float = 0.0  # cold-start load, 0 when warm

    @property
    def finish_s(self) -> float:
        """When the gang is released."""
        return self.start_s + self.service_s

    @property
    def done_s(self) -> float:
        """When the user has the result."""
        return self.start_s + self.service_s + self.transfer_s


def allowed_gang_sizes(snapshot: ClusterSnapshot, task: TaskSpec) -> tuple[int, ...]:
    """The gang sizes both the task and the cluster allow, ascending."""
    return _allowed(snapshot.gang_sizes, task.gang_sizes)


@lru_cache(maxsize=256)
def _allowed(cluster: tuple[int, ...], requested: tuple[int, ...] | None) -> tuple[int, ...]:
    return tuple(sorted(k for k in (cluster if requested is None else requested) if k in cluster))


def steps_for_bucket(lo: int, hi: int, bucket: int, n_buckets: int = STEP_BUCKETS) -> int:
    """Steps of `bucket` when the buckets spread lo..hi evenly."""
    if lo == hi or n_buckets == 1:
        return hi
    return lo + round(bucket * (hi - lo) / (n_buckets - 1))


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
    qualities, best = _qualities(perf, model, lo, hi)
    target = best if floor is None else min(floor, best)
    return next(lo + i for i, q in enumerate(qualities) if q >= target - 1e-12)


@lru_cache(maxsize=1024)
def _qualities(perf: PerfModel, model: str, lo: int, hi: int) -> tuple[tuple[float, ...], float]:
    """Quality at each step count lo..hi and the best of them: floors are user numbers, rarely
    repeated, while a model's step ranges are few."""
    qualities = tuple(perf.quality(model, s) for s in range(lo, hi + 1))
    return qualities, max(qualities)


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


def eligible_nodes(snapshot: ClusterSnapshot, task: TaskSpec, k: int) -> list[int]:
    """Indices of the up nodes whose GPU class can run `task` as a member of a k-gang."""
    key = (task.model, task.width, task.height, k)
    capable = snapshot.capable.get(key)
    if capable is None:
        supports, by_class = snapshot.perf.supports, {}  # a few classes among many nodes
        for n in snapshot.nodes:
            if n.gpu_class not in by_class:
                by_class[n.gpu_class] = supports(n.gpu_class, *key)
        capable = tuple(i for i, n in enumerate(snapshot.nodes) if by_class[n.gpu_class])
        snapshot.capable[key] = capable
    nodes = snapshot.nodes
    return [i for i in capable if nodes[i].up]


def _members_warm(reuse: str, model: str, members: list[NodeState]) -> bool:
    group = None
    if reuse == "exact-group":
        group = (members[0].name,) if len(members) == 1 else tuple(sorted(n.name for n in members))
    for n in members:  # loops, not any()/all() generators: this runs on every estimate
        for r in n.resident:
            if r.model == model and (group is None or r.group == group):
                break
        else:
            return False
    return True


def estimate(snapshot: ClusterSnapshot, task: TaskSpec, nodes: tuple[int, ...], steps: int) -> Estimate:
    """Start, service time (slowest member paces the gang) and quality of a placement."""
    # Plain loops and few calls: this runs on every decision of every policy.
    perf, model = snapshot.perf, task.model
    k = len(nodes)
    members = [snapshot.nodes[i] for i in nodes]
    cold = not _members_warm(perf.reuse, model, members)
    start, step_s, load_s, cls = snapshot.now, 0.0, 0.0, None
    for n in members:
        start = n.free_at if n.free_at > start else start
        if n.gpu_class != cls:  # gangs are mostly of one class: price each class once
            cls = n.gpu_class
            s = perf.step_seconds(cls, model, task.width, task.height, k)
            step_s = s if s > step_s else step_s
            if cold:
                load = perf.load_seconds(cls, model, k)
                load_s = load if load > load_s else load_s
    transfer_s = transfer_seconds(snapshot, task, members) if task.input_mbit or task.output_mbit else 0.0
    step_s *= task.work_scale
    return Estimate(start, steps * step_s + load_s, cold, perf.quality(model, steps), transfer_s, step_s, load_s)


def _solo_finish(snapshot: ClusterSnapshot, task: TaskSpec, node: NodeState, k: int, steps: int) -> float:
    perf, model = snapshot.perf, task.model
    load = 0.0 if any(r.model == model for r in node.resident) else perf.load_seconds(node.gpu_class, model, k)
    start = node.free_at if node.free_at > snapshot.now else snapshot.now
    return start + load + steps * step_time(perf, task, node.gpu_class, k)


def complete_gang(
    snapshot: ClusterSnapshot, task: TaskSpec, k: int, anchor: int, eligible: list[int] | None = None
) -> tuple[int, ...] | None:
    """The k nodes a gang anchored at `anchor` runs on, or None if no such gang can run the task.

    Under exact-group reuse an anchor inside a live warm k-group of the task's model takes that
    group. Otherwise the anchor is joined by the k-1 other eligible nodes that would finish the
    task soonest on their own, ties broken by index, so the rule is deterministic everywhere.
    `eligible` is `eligible_nodes(snapshot, task, k)`, for callers that have it already.
    """
    if eligible is None:
        eligible = eligible_nodes(snapshot, task, k)
    return _complete_gang(snapshot, task, k, anchor, eligible, None)


def _complete_gang(
    snapshot: ClusterSnapshot,
    task: TaskSpec,
    k: int,
    anchor: int,
    eligible: list[int],
    ranked: list[int] | None,  # _rank_by_solo_finish(...), when the caller completes many anchors
) -> tuple[int, ...] | None:
    if anchor not in eligible:
        return None
    if k == 1:
        return (anchor,)
    if snapshot.perf.reuse == "exact-group":
        group = _warm_group(snapshot, task, anchor, k, eligible)
        if group is not None:
            return group
    if len(eligible) < k:
        return None
    if ranked is None:
        ranked = _rank_by_solo_finish(snapshot, task, k, eligible)
    partners = [i for i in ranked if i != anchor][: k - 1]
    return tuple(sorted([anchor, *partners]))


def _rank_by_solo_finish(snapshot: ClusterSnapshot, task: TaskSpec, k: int, eligible: list[int]) -> list[int]:
    """Eligible nodes by when each would finish the task on its own, ties by index."""
    nodes, steps = snapshot.nodes, task.max_steps
    return [i for _, i in sorted((_solo_finish(snapshot, task, nodes[i], k, steps), i) for i in eligible)]


def _warm_group(
    snapshot: ClusterSnapshot, task: TaskSpec, anchor: int, k: int, eligible: list[int]
) -> tuple[int, ...] | None:
    nodes = snapshot.nodes
    for r in nodes[anchor].resident:
        if r.model == task.model and len(r.group) == k:
            members = tuple(i for i in eligible if nodes[i].name in r.group)  # eligible is ascending
            if len(members) == k:
                return members
    return None


def candidate_gangs(snapshot: ClusterSnapshot, task: TaskSpec) -> Iterator[tuple[int, tuple[int, ...]]]:
    """Every distinct (k, gang) reachable through `complete_gang` for this task."""
    seen: set[tuple[int, ...]] = set()
    for k in allowed_gang_sizes(snapshot, task):
        eligible = eligible_nodes(snapshot, task, k)
        if k == 1:  # each eligible node alone: distinct, and unlike any larger gang
            for anchor in eligible:
                yield 1, (anchor,)
            continue
        if k == len(eligible):  # every anchor completes to the same gang: all of them
            gang = tuple(eligible)
            if gang not in seen:
                seen.add(gang)
                yield k, gang
            continue
        # the ranking does not depend on the anchor: price every node once, not once per anchor
        ranked = _rank_by_solo_finish(snapshot, task, k, eligible) if 1 < k <= len(eligible) else None
        for anchor in eligible:  # any other anchor completes to None
            gang = _complete_gang(snapshot, task, k, anchor, eligible, ranked)
            if gang is not None and gang not in seen:
                seen.add(gang)
                yield k, gang


def earliest_finish(
    snapshot: ClusterSnapshot, task: TaskSpec, steps: int
) -> tuple[tuple[int, ...], Estimate] | None:
    """The candidate gang that hands the result back soonest, ties to the first found."""
    best: tuple[tuple[int, ...], Estimate] | None = None
    best_done = 0.0
    for _, gang in candidate_gangs(snapshot, task):
        est = estimate(snapshot, task, gang, steps)
        done = est.done_s
        if best is None or done < best_done:
            best, best_done = (gang, est), done
    return best
