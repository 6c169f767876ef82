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
from aigc_policy.snapshot import GANG_SIZES, ClusterSnapshot, NodeState, PerfModel, TaskSpec

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
    """Memoises PerfModel look-ups: a scenario has few (class, model, size, k) combinations."""

    def __init__(self, perf: PerfModel) -> None:
        self.perf = perf
        self._supports: dict[tuple, bool] = {}
        self._step: dict[tuple, float] = {}
        self._load: dict[tuple, float] = {}
        self._quality: dict[tuple, float] = {}
        self._vram: dict[str, float] = {}
        self._class_vram: dict[str, float] = {}

    def supports(self, cls: str, model: str, w: int, h: int, k: int) -> bool:
        key = (cls, model, w, h, k)
        if key not in self._supports:
            self._supports[key] = bool(self.perf.supports(cls, model, w, h, k))
        return self._supports[key]

    def step_seconds(self, cls: str, model: str, w: int, h: int, k: int) -> float:
        key = (cls, model, w, h, k)
        if key not in self._step:
            self._step[key] = float(self.perf.step_seconds(cls, model, w, h, k))
        return self._step[key]

    def load_seconds(self, cls: str, model: str, k: int) -> float:
        key = (cls, model, k)
        if key not in self._load:
            self._load[key] = float(self.perf.load_seconds(cls, model, k))
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
        pairs, k1_service = _pair_features(snap, tasks, cache)
        valid = pairs[..., PAIR_FIELDS.index("valid")] > 0
        action_mask = np.concatenate(
            [[snap.has_future_events], valid.transpose(0, 2, 1).reshape(-1)]
        )
        return EncodedState(
            tasks=_task_features(snap, tasks, cache),
            nodes=_node_features(snap, tasks, cache, pairs, k1_service),
            pairs=pairs.astype(np.float32),
            action_mask=action_mask,
            steps_mask=_steps_mask(snap.perf, tasks),
        )


def _task_features(snap: ClusterSnapshot, tasks: Sequence[TaskSpec], cache: _PerfCache) -> np.ndarray:
    out = np.zeros((len(tasks), TASK_FEATURES), dtype=np.float32)
    overflow = float(np.log1p(max(0, len(snap.queue) - len(tasks)) / MAX_QUEUE))
    n_nodes = len(snap.nodes)
    for i, t in enumerate(tasks):
        allowed = allowed_gang_sizes(snap, t)
        resident = sum(any(r.model == t.model for r in node.resident) for node in snap.nodes)
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


def _warm_k1(snap: ClusterSnapshot, node: NodeState, model: str) -> bool:
    if snap.perf.reuse == "exact-group":
        return any(r.model == model and r.group == (node.name,) for r in node.resident)
    return any(r.model == model for r in node.resident)


def _pair_features(
    snap: ClusterSnapshot, tasks: Sequence[TaskSpec], cache: _PerfCache
) -> tuple[np.ndarray, np.ndarray]:
    """[Q, N, G, PAIR_FEATURES] features and the [Q, N] single-node service time (seconds).

    Everything but the start and slack terms depends only on the task's shape (model, size,
    steps, allowed gangs), so it is built once per distinct shape in the visible queue.
    """
    q, n = len(tasks), len(snap.nodes)
    out = np.zeros((q, n, N_GANG, PAIR_FEATURES), dtype=np.float64)
    k1_service = np.zeros((q, n))
    start = np.maximum(snap.now, np.array([node.free_at for node in snap.nodes], dtype=np.float64))
    f = {name: i for i, name in enumerate(PAIR_FIELDS)}
    blocks: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, t in enumerate(tasks):
        shape = (
            t.model, t.width, t.height, t.min_steps, t.max_steps, t.min_quality, allowed_gang_sizes(snap, t),
            t.work_scale, t.origin, t.input_mbit, t.output_mbit,
        )
        if shape not in blocks:
            blocks[shape] = _shape_block(snap, t, cache)
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
    snap: ClusterSnapshot, t: TaskSpec, cache: _PerfCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-independent pair features [N, G, F], k = 1 seconds to result [N] and can-run [N].

    Times are for the fewest acceptable steps (steps bucket 0, what a deadline-minded policy
    runs). The k = 1 time (service plus transfer) is placement.estimate's, evaluated once per
    (GPU class, warm, local) combination since the start time is the only other per-node part.
    """
    nodes = snap.nodes
    f = {name: i for i, name in enumerate(PAIR_FIELDS)}
    steps = min_acceptable_steps(snap.perf, t)
    block = np.zeros((len(nodes), N_GANG, PAIR_FEATURES))
    names = {node.name for node in nodes}
    allowed = allowed_gang_sizes(snap, t)
    up = np.array([node.up for node in nodes])
    resident = np.array([any(r.model == t.model for r in nd.resident) for nd in nodes])
    warm1 = np.array([_warm_k1(snap, nd, t.model) for nd in nodes])
    free_vram = np.array(
        [cache.class_vram(nd.gpu_class) - sum(cache.model_vram(r.model) for r in nd.resident) for nd in nodes]
    )
    supported = np.array(
        [[cache.supports(nd.gpu_class, t.model, t.width, t.height, k) for k in GANG_SIZES] for nd in nodes]
    )
    service1 = np.zeros(len(nodes))
    memo: dict[tuple[str, bool, bool], float] = {}
    for j, nd in enumerate(nodes):
        if supported[j, 0]:
            key = (nd.gpu_class, bool(warm1[j]), nd.name == t.origin)
            if key not in memo:
                est = estimate(snap, t, (j,), steps)
                memo[key] = est.done_s - est.start_s
            service1[j] = memo[key]
    can1 = up & supported[:, 0]
    block[:, :, f["model_resident"]] = resident[:, None]
    block[:, :, f["warm_k1"]] = warm1[:, None]
    block[:, :, f["can_run_k1"]] = can1[:, None]
    block[:, :, f["service_k1"]] = (_tlog(service1) * can1)[:, None]
    block[:, :, f["fits_vram"]] = (resident | (free_vram >= cache.model_vram(t.model)))[:, None]
    for g, k in enumerate(GANG_SIZES):
        eligible = up & supported[:, g]
        valid = eligible & (k in allowed) & (eligible.sum() >= k)
        warm_group = np.array(
            [any(r.model == t.model and len(r.group) == k and names.issuperset(r.group) for r in nd.resident)
             for nd in nodes]
        )
        warm = warm1 if k == 1 else (warm_group if snap.perf.reuse == "exact-group" else resident)
        service = np.array(
            [
                steps * t.work_scale * cache.step_seconds(nd.gpu_class, t.model, t.width, t.height, k)
                + (0.0 if warm[j] else cache.load_seconds(nd.gpu_class, t.model, k))
                if valid[j]
                else 0.0
                for j, nd in enumerate(nodes)
            ]
        )
        block[:, g, f["gang_size"]] = k / max(GANG_SIZES)
        block[:, g, f["valid"]] = valid
        block[:, g, f["warm_group_k"]] = warm_group
        block[:, g, f["service_k"]] = _tlog(service) * valid
    return block, service1, can1
