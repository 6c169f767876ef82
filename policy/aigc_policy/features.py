"""Feature encoder: ClusterSnapshot -> the tensors a learned policy reads.

numpy only, and the one module that builds policy inputs: the trainer, `aigc-edge export` and
the operator all call `Encoder.encode`, so a policy sees the same numbers in simulation and on a
live cluster (tests/unit/test_features_replay.py replays recorded snapshots to keep it that way).

Layout (Q visible tasks, N nodes, G = len(GANG_SIZES) gang sizes, S = STEP_BUCKETS):
  tasks  [Q, TASK_FEATURES]        one token per visible queued task, FIFO order
  nodes  [N, NODE_FEATURES]        one token per node, snapshot order
  pairs  [Q, N, G, PAIR_FEATURES]  task x anchor-node x gang-size features
  action_mask [1 + Q*G*N]          see aigc_policy.actions for the index layout
  steps_mask  [Q, S]               distinct step buckets of each task (actions.bucket_steps)

Times are in units of TIME_SCALE_S and squashed with log1p (or a signed log for slack) so
that queues of minutes stay in a small range; GPU classes are described by what they do
(speed, memory), never by name, so a policy transfers to classes it has not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aigc_policy.actions import bucket_steps
from aigc_policy.placement import STEP_BUCKETS, allowed_gang_sizes, estimate, min_acceptable_steps
from aigc_policy.snapshot import GANG_SIZES, ClusterSnapshot, PerfModel, TaskSpec

FEATURE_SCHEMA_VERSION = 1
MAX_QUEUE = 32
MIN_NODES, MAX_NODES = 2, 64
TIME_SCALE_S = 30.0
STEPS_SCALE = 50.0
VRAM_SCALE_GB = 80.0

TASK_FIELDS: tuple[str, ...] = (
    "waiting",
    "log_pixels",
    "floor_steps",
    "max_steps",
    "steps_free",
    "has_deadline",
    "slack",
    "has_quality_floor",
    "quality_floor",
    *(f"gang_{k}_allowed" for k in GANG_SIZES),
    "priority",
    "queue_position",
    "queue_overflow",
    "model_vram",
    "quality_at_max_steps",
    "quality_at_floor_steps",
    "model_resident_fraction",
    "work_scale",
    "transfer_mbit",
)
NODE_FIELDS: tuple[str, ...] = (
    "up",
    "busy_for",
    "metrics_age",
    "vram",
    "free_vram",
    "residents",
    "largest_group",
    "inflight",
    "mean_service_k1",
    "queue_warm_fraction",
)
PAIR_FIELDS: tuple[str, ...] = (
    "model_resident",
    "warm_k1",
    "can_run_k1",
    "start_wait_k1",
    "service_k1",
    "finish_k1",
    "slack_after_k1",
    "fits_vram",
    "gang_size",
    "valid",
    "warm_group_k",
    "service_k",
)
TASK_FEATURES, NODE_FEATURES, PAIR_FEATURES = len(TASK_FIELDS), len(NODE_FIELDS), len(PAIR_FIELDS)
N_GANG = len(GANG_SIZES)


def _tlog(seconds: np.ndarray | float) -> np.ndarray:
    return np.log1p(np.maximum(np.asarray(seconds, dtype=np.float64), 0.0) / TIME_SCALE_S)


def _signed_tlog(seconds: np.ndarray | float) -> np.ndarray:
    x = np.asarray(seconds, dtype=np.float64) / TIME_SCALE_S
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(slots=True)
class EncodedState:
    tasks: np.ndarray
    nodes: np.ndarray
    pairs: np.ndarray
    action_mask: np.ndarray
    steps_mask: np.ndarray

    @property
    def n_tasks(self) -> int:
        return self.tasks.shape[0]

    @property
    def n_nodes(self) -> int:
        return self.nodes.shape[0]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__slots__}


class _PerfCache:
    """Memoised PerfModel look-ups, as per-node tables for a given sequence of node classes."""

    def __init__(self, perf: PerfModel) -> None:
        self.perf = perf
        self._gang: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._load: dict[tuple, np.ndarray] = {}
        self._quality: dict[tuple[str, int], float] = {}
        self._vram: dict[str, float] = {}
        self._class_vram: dict[str, float] = {}

    def gang_tables(self, classes: tuple[str, ...], model: str, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """supported [N, G] and seconds per step [N, G] (0 where unsupported)."""
        key = (classes, model, w, h)
        if key not in self._gang:
            by_class = {}
            for c in set(classes):
                ok = [bool(self.perf.supports(c, model, w, h, k)) for k in GANG_SIZES]
                step = [self.perf.step_seconds(c, model, w, h, k) if o else 0.0 for k, o in zip(GANG_SIZES, ok, strict=True)]
                by_class[c] = (ok, step)
            self._gang[key] = (
                np.array([by_class[c][0] for c in classes], dtype=bool),
                np.array([by_class[c][1] for c in classes], dtype=np.float64),
            )
        return self._gang[key]

    def load_table(self, classes: tuple[str, ...], model: str) -> np.ndarray:
        """Cold-start seconds [N, G]."""
        key = (classes, model)
        if key not in self._load:
            by_class = {c: [self.perf.load_seconds(c, model, k) for k in GANG_SIZES] for c in set(classes)}
            self._load[key] = np.array([by_class[c] for c in classes], dtype=np.float64)
        return self._load[key]

    def quality(self, model: str, steps: int) -> float:
        key = (model, steps)
        if key not in self._quality:
            self._quality[key] = float(self.perf.quality(model, steps))
        return self._quality[key]

    def model_vram(self, model: str) -> float:
        if model not in self._vram:
            self._vram[model] = float(self.perf.model_vram_gb(model))
        return self._vram[model]

    def class_vram(self, cls: str) -> float:
        if cls not in self._class_vram:
            self._class_vram[cls] = float(self.perf.class_vram_gb(cls))
        return self._class_vram[cls]


class _ClusterView:
    """Per-node arrays of one snapshot, and per-model residency computed on first use."""

    def __init__(self, snap: ClusterSnapshot, cache: _PerfCache) -> None:
        nodes = snap.nodes
        self.snap = snap
        self.classes = tuple(n.gpu_class for n in nodes)
        self.up = np.array([n.up for n in nodes], dtype=bool)
        self.start = np.maximum(snap.now, np.array([n.free_at for n in nodes], dtype=np.float64))
        self.free_vram = np.array(
            [cache.class_vram(n.gpu_class) - sum(cache.model_vram(r.model) for r in n.resident) for n in nodes]
        )
        self._names = {n.name for n in nodes}
        self._residency: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def residency(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model resident on the node [N]; warm for a 1-gang [N]; in a live warm k-group [N, G]."""
        if model not in self._residency:
            nodes, exact = self.snap.nodes, self.snap.perf.reuse == "exact-group"
            resident = np.array([any(r.model == model for r in n.resident) for n in nodes], dtype=bool)
            warm1 = (
                np.array([any(r.model == model and r.group == (n.name,) for r in n.resident) for n in nodes])
                if exact
                else resident
            )
            groups = np.zeros((len(nodes), N_GANG), dtype=bool)
            for j, n in enumerate(nodes):
                for r in n.resident:
                    if r.model == model and len(r.group) in GANG_SIZES and self._names.issuperset(r.group):
                        groups[j, GANG_SIZES.index(len(r.group))] = True
            self._residency[model] = (resident, warm1.astype(bool), groups)
        return self._residency[model]


class Encoder:
    """Builds EncodedState from snapshots; keeps a look-up cache per PerfModel object."""

    def __init__(self, max_queue: int = MAX_QUEUE) -> None:
        self.max_queue = max_queue
        self._cache: _PerfCache | None = None

    def _perf(self, perf: PerfModel) -> _PerfCache:
        if self._cache is None or self._cache.perf is not perf:
            self._cache = _PerfCache(perf)
        return self._cache

    def encode(self, snap: ClusterSnapshot) -> EncodedState:
        n = len(snap.nodes)
        if not MIN_NODES <= n <= MAX_NODES:
            raise ValueError(f"the encoder supports {MIN_NODES}..{MAX_NODES} nodes, got {n}")
        cache = self._perf(snap.perf)
        tasks = list(snap.queue[: self.max_queue])
        view = _ClusterView(snap, cache)
        pairs, k1_service = _pair_features(view, tasks, cache)
        valid = pairs[..., PAIR_FIELDS.index("valid")] > 0
        action_mask = np.concatenate(
            [[snap.has_future_events], valid.transpose(0, 2, 1).reshape(-1)]
        )
        return EncodedState(
            tasks=_task_features(view, tasks, cache),
            nodes=_node_features(snap, tasks, cache, pairs, k1_service),
            pairs=pairs.astype(np.float32),
            action_mask=action_mask,
            steps_mask=_steps_mask(snap.perf, tasks),
        )


def _task_features(view: _ClusterView, tasks: Sequence[TaskSpec], cache: _PerfCache) -> np.ndarray:
    snap = view.snap
    out = np.zeros((len(tasks), TASK_FEATURES), dtype=np.float32)
    overflow = float(np.log1p(max(0, len(snap.queue) - len(tasks)) / MAX_QUEUE))
    n_nodes = len(snap.nodes)
    for i, t in enumerate(tasks):
        allowed = allowed_gang_sizes(snap, t)
        resident = int(view.residency(t.model)[0].sum())
        slack = 0.0 if t.deadline_s is None else float(_signed_tlog(t.arrival_s + t.deadline_s - snap.now))
        out[i] = (
            float(_tlog(snap.now - t.arrival_s)),
            np.log2(t.width * t.height / 512**2) / 2.0,
            min_acceptable_steps(snap.perf, t) / STEPS_SCALE,
            t.max_steps / STEPS_SCALE,
            float(not t.steps_fixed),
            float(t.deadline_s is not None),
            slack,
            float(t.min_quality is not None),
            t.min_quality or 0.0,
            *(float(k in allowed) for k in GANG_SIZES),
            np.tanh(t.priority / 2.0),
            i / MAX_QUEUE,
            overflow,
            cache.model_vram(t.model) / VRAM_SCALE_GB,
            cache.quality(t.model, t.max_steps),
            cache.quality(t.model, min_acceptable_steps(snap.perf, t)),
            resident / n_nodes,
            np.log(t.work_scale),
            np.log1p((t.input_mbit + t.output_mbit) / 100.0),
        )
    return out


def _node_features(
    snap: ClusterSnapshot,
    tasks: Sequence[TaskSpec],
    cache: _PerfCache,
    pairs: np.ndarray,
    k1_service: np.ndarray,
) -> np.ndarray:
    out = np.zeros((len(snap.nodes), NODE_FEATURES), dtype=np.float32)
    can_run = pairs[:, :, 0, PAIR_FIELDS.index("can_run_k1")] > 0
    resident_for_queue = pairs[:, :, 0, PAIR_FIELDS.index("model_resident")]
    for j, node in enumerate(snap.nodes):
        vram = cache.class_vram(node.gpu_class)
        used = sum(cache.model_vram(r.model) for r in node.resident)
        runnable = can_run[:, j]
        out[j] = (
            float(node.up),
            float(_tlog(node.free_at - snap.now)),
            float(np.log1p(node.metrics_age_s / 10.0)),
            vram / VRAM_SCALE_GB,
            max(vram - used, 0.0) / max(vram, 1e-6),
            len(node.resident) / 4.0,
            max((len(r.group) for r in node.resident), default=0) / max(GANG_SIZES),
            np.log1p(node.inflight),
            float(_tlog(k1_service[runnable, j]).mean()) if runnable.any() else 0.0,
            float(resident_for_queue[:, j].mean()) if len(tasks) else 0.0,
        )
    return out


def _steps_mask(perf: PerfModel, tasks: Sequence[TaskSpec]) -> np.ndarray:
    """True for the first bucket of each distinct step count."""
    mask = np.zeros((len(tasks), STEP_BUCKETS), dtype=bool)
    for i, t in enumerate(tasks):
        steps = bucket_steps(perf, t)
        mask[i] = [s not in steps[:b] for b, s in enumerate(steps)]
    return mask


def _pair_features(
    view: _ClusterView, tasks: Sequence[TaskSpec], cache: _PerfCache
) -> tuple[np.ndarray, np.ndarray]:
    """[Q, N, G, PAIR_FEATURES] features and the [Q, N] single-node seconds to result.

    Everything but the start and slack terms depends only on the task's shape (model, size,
    steps, allowed gangs, work, transfer), so it is built once per distinct shape in the queue.
    """
    snap, start = view.snap, view.start
    q, n = len(tasks), len(snap.nodes)
    out = np.zeros((q, n, N_GANG, PAIR_FEATURES), dtype=np.float64)
    k1_service = np.zeros((q, n))
    f = {name: i for i, name in enumerate(PAIR_FIELDS)}
    blocks: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, t in enumerate(tasks):
        shape = (
            t.model, t.width, t.height, t.min_steps, t.max_steps, t.min_quality, allowed_gang_sizes(snap, t),
            t.work_scale, t.origin, t.input_mbit, t.output_mbit,
        )
        if shape not in blocks:
            blocks[shape] = _shape_block(view, t, cache)
        block, service, can1 = blocks[shape]
        finish = start + service
        out[i] = block
        k1_service[i] = service
        out[i, :, :, f["start_wait_k1"]] = _tlog(start - snap.now)[:, None]
        out[i, :, :, f["finish_k1"]] = (_tlog(finish - snap.now) * can1)[:, None]
        if t.deadline_s is not None:
            slack = _signed_tlog(t.arrival_s + t.deadline_s - finish) * can1
            out[i, :, :, f["slack_after_k1"]] = slack[:, None]
    return out, k1_service


def _shape_block(
    view: _ClusterView, t: TaskSpec, cache: _PerfCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-independent pair features [N, G, F], k = 1 seconds to result [N] and can-run [N].

    Times are for the fewest acceptable steps (steps bucket 0, what a deadline-minded policy
    runs). The k = 1 time (service plus transfer) is placement.estimate's, evaluated once per
    (GPU class, warm, local) combination since the start time is the only other per-node part.
    """
    snap = view.snap
    f = {name: i for i, name in enumerate(PAIR_FIELDS)}
    steps = min_acceptable_steps(snap.perf, t)
    supported, step_s = cache.gang_tables(view.classes, t.model, t.width, t.height)
    load = cache.load_table(view.classes, t.model)
    resident, warm1, groups = view.residency(t.model)
    service1 = np.zeros(len(view.classes))
    combos = {}
    for j in np.flatnonzero(supported[:, 0]):
        combos.setdefault((view.classes[j], bool(warm1[j]), snap.nodes[j].name == t.origin), []).append(j)
    for members in combos.values():
        est = estimate(snap, t, (int(members[0]),), steps)
        service1[members] = est.done_s - est.start_s
    can1 = view.up & supported[:, 0]
    allowed = np.array([k in allowed_gang_sizes(snap, t) for k in GANG_SIZES])
    eligible = view.up[:, None] & supported
    valid = eligible & allowed & (eligible.sum(0) >= np.array(GANG_SIZES))
    if snap.perf.reuse == "exact-group":
        warm = np.concatenate([warm1[:, None], groups[:, 1:]], 1)
    else:
        warm = np.concatenate([warm1[:, None], np.repeat(resident[:, None], N_GANG - 1, 1)], 1)
    service = np.where(valid, steps * t.work_scale * step_s + np.where(warm, 0.0, load), 0.0)
    block = np.zeros((len(view.classes), N_GANG, PAIR_FEATURES))
    block[:, :, f["model_resident"]] = resident[:, None]
    block[:, :, f["warm_k1"]] = warm1[:, None]
    block[:, :, f["can_run_k1"]] = can1[:, None]
    block[:, :, f["service_k1"]] = (_tlog(service1) * can1)[:, None]
    block[:, :, f["fits_vram"]] = (resident | (view.free_vram >= cache.model_vram(t.model)))[:, None]
    block[:, :, f["gang_size"]] = np.array(GANG_SIZES) / max(GANG_SIZES)
    block[:, :, f["valid"]] = valid
    block[:, :, f["warm_group_k"]] = groups
    block[:, :, f["service_k"]] = _tlog(service) * valid
    return block, service1, can1
