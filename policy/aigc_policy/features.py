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

import math
from dataclasses import dataclass

import numpy as np

from aigc_policy.actions import bucket_steps
from aigc_policy.placement import STEP_BUCKETS, allowed_gang_sizes, min_acceptable_steps
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


class _Shape:
    """What the encoder needs of one task shape (model, size, steps, floor, gangs, work, transfer)
    that does not change while the task waits: the static task fields, the steps mask, and the
    numbers the per-class look-ups are scaled by. Cached across decisions (a task waits through
    many, and shapes repeat); everything per node is vectorised in Encoder.encode.
    """

    __slots__ = ("model", "vram", "static", "steps_mask", "allowed", "kid", "nums")

    def __init__(self, snap: ClusterSnapshot, t: TaskSpec, kid: int, tables: _ClassTables) -> None:
        perf = snap.perf
        floor = min_acceptable_steps(perf, t)
        allowed = allowed_gang_sizes(snap, t)
        self.model = t.model
        self.kid = kid
        self.vram = tables.model_vram(t.model)
        flags = [float(k in allowed) for k in GANG_SIZES]
        self.allowed = np.array(flags, dtype=bool)
        # the fields of TASK_FIELDS that do not change while the task waits (NaN: filled per decision)
        self.static = np.array([
            math.nan,
            math.log2(t.width * t.height / 512**2) / 2.0,
            floor / STEPS_SCALE,
            t.max_steps / STEPS_SCALE,
            float(not t.steps_fixed),
            float(t.deadline_s is not None),
            math.nan,
            float(t.min_quality is not None),
            t.min_quality or 0.0,
            *flags,
            math.tanh(t.priority / 2.0),
            math.nan,
            math.nan,
            self.vram / VRAM_SCALE_GB,
            tables.quality(t.model, t.max_steps),
            tables.quality(t.model, floor),
            math.nan,
            math.log(t.work_scale),
            math.log1p((t.input_mbit + t.output_mbit) / 100.0),
        ])
        steps = bucket_steps(perf, t)
        self.steps_mask = np.array([s not in steps[:b] for b, s in enumerate(steps)])
        shipped = t.input_mbit > 0.0 or t.output_mbit > 0.0
        # service = floor * work * seconds per step; transfers (only if the task ships anything)
        self.nums = (floor * t.work_scale, t.input_mbit if shipped else 0.0, t.output_mbit if shipped else 0.0)


class _ClassTables:
    """PerfModel look-ups per (distinct classes, model, size), stacked over the (model, size)
    combinations seen so far: supported [K, C, G], seconds per step [K, C, G] (0 where
    unsupported), cold load [K, C, G], link rate [K, C] (inf: transfers are free)."""

    def __init__(self, perf: PerfModel) -> None:
        self.perf = perf
        self._ids: dict[tuple, int] = {}
        self._rows: dict[tuple[str, ...], list[tuple[np.ndarray, ...]]] = {}
        self._stacked: dict[tuple[str, ...], tuple[np.ndarray, ...]] = {}
        self._quality: dict[tuple[str, int], float] = {}
        self._vram: dict[str, float] = {}

    def kid(self, classes: tuple[str, ...], model: str, w: int, h: int) -> int:
        key = (classes, model, w, h)
        hit = self._ids.get(key)
        if hit is None:
            perf = self.perf
            sup = np.array([[bool(perf.supports(c, model, w, h, k)) for k in GANG_SIZES] for c in classes])
            step = np.array([[perf.step_seconds(c, model, w, h, k) if ok else 0.0
                              for k, ok in zip(GANG_SIZES, row, strict=True)]
                             for c, row in zip(classes, sup, strict=True)], dtype=np.float64)
            load = np.array([[perf.load_seconds(c, model, k) for k in GANG_SIZES] for c in classes], dtype=np.float64)
            rates = [perf.link_mbps(c) for c in classes]
            rate = np.array([np.inf if r is None else r for r in rates], dtype=np.float64)
            rows = self._rows.setdefault(classes, [])
            hit = self._ids[key] = len(rows)
            rows.append((sup, step, load, rate))
            self._stacked.pop(classes, None)
        return hit

    def stacked(self, classes: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        hit = self._stacked.get(classes)
        if hit is None:
            hit = self._stacked[classes] = tuple(np.stack(col) for col in zip(*self._rows[classes], strict=True))
        return hit

    def quality(self, model: str, steps: int) -> float:
        q = self._quality.get((model, steps))
        if q is None:
            q = self._quality[(model, steps)] = float(self.perf.quality(model, steps))
        return q

    def model_vram(self, model: str) -> float:
        v = self._vram.get(model)
        if v is None:
            v = self._vram[model] = float(self.perf.model_vram_gb(model))
        return v


def _shape_key(snap: ClusterSnapshot, t: TaskSpec) -> tuple:
    return (t.model, t.width, t.height, t.min_steps, t.max_steps, t.min_quality, t.gang_sizes, snap.gang_sizes,
            t.priority, t.deadline_s is None, t.work_scale, t.input_mbit, t.output_mbit)


class Encoder:
    """Builds EncodedState from snapshots; keeps per-shape tables for the PerfModel it last saw.

    Vectorised over (task, node, gang): the Python work per decision is one pass over the nodes
    and their residents and one dictionary look-up per visible task.
    """

    MAX_SHAPES = 4096

    def __init__(self, max_queue: int = MAX_QUEUE) -> None:
        self.max_queue = max_queue
        self._shapes: dict[tuple, _Shape] = {}
        self._classes: dict[tuple[str, ...], tuple[tuple[str, ...], np.ndarray, np.ndarray]] = {}
        self._tables: _ClassTables | None = None

    def _reset_if_new_perf(self, perf: PerfModel) -> _ClassTables:
        if self._tables is None or self._tables.perf is not perf:
            self._tables = _ClassTables(perf)
            self._shapes.clear()
            self._classes.clear()
        elif len(self._shapes) > self.MAX_SHAPES:
            self._shapes.clear()
        return self._tables

    def _class_index(self, snap: ClusterSnapshot, names: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """(distinct classes, class index per node [N], VRAM per distinct class [C])."""
        hit = self._classes.get(names)
        if hit is None:
            distinct = tuple(dict.fromkeys(names))
            where = {c: i for i, c in enumerate(distinct)}
            vram = np.array([float(snap.perf.class_vram_gb(c)) for c in distinct])
            hit = self._classes[names] = (distinct, np.array([where[c] for c in names], dtype=np.intp), vram)
        return hit

    def encode(self, snap: ClusterSnapshot) -> EncodedState:
        nodes = snap.nodes
        n = len(nodes)
        if not MIN_NODES <= n <= MAX_NODES:
            raise ValueError(f"the encoder supports {MIN_NODES}..{MAX_NODES} nodes, got {n}")
        perf = snap.perf
        tables = self._reset_if_new_perf(perf)
        now = snap.now
        tasks = list(snap.queue[: self.max_queue])
        q = len(tasks)
        distinct, cidx, class_vram = self._class_index(snap, tuple(nd.gpu_class for nd in nodes))
        shapes = []
        for t in tasks:
            key = (distinct, *_shape_key(snap, t))
            sh = self._shapes.get(key)
            if sh is None:
                sh = self._shapes[key] = _Shape(snap, t, tables.kid(distinct, t.model, t.width, t.height), tables)
            shapes.append(sh)
        # ---- nodes: one pass over nodes and residents
        up = np.fromiter((nd.up for nd in nodes), bool, n)
        free_at = np.fromiter((nd.free_at for nd in nodes), np.float64, n)
        start = np.maximum(now, free_at)
        exact = perf.reuse == "exact-group"
        index = {nd.name: j for j, nd in enumerate(nodes)}
        used = np.zeros(n)
        n_res = np.zeros(n)
        largest = np.zeros(n)
        models = {sh.model for sh in shapes}
        res_m = {m: np.zeros(n, bool) for m in models}
        warm1_m = {m: np.zeros(n, bool) for m in models} if exact else res_m
        grp_m = {m: np.zeros((n, N_GANG), bool) for m in models}
        for j, nd in enumerate(nodes):
            residents = nd.resident
            if not residents:
                continue
            n_res[j] = len(residents)
            for r in residents:
                used[j] += tables.model_vram(r.model)
                size = len(r.group)
                if size > largest[j]:
                    largest[j] = size
                if r.model in res_m:
                    res_m[r.model][j] = True
                    if exact and r.group == (nd.name,):
                        warm1_m[r.model][j] = True
                    if size in GANG_SIZES and all(name in index for name in r.group):
                        grp_m[r.model][j, GANG_SIZES.index(size)] = True
        vram = class_vram[cidx]
        nodes_out = np.empty((n, NODE_FEATURES), dtype=np.float64)
        nodes_out[:, 0] = up
        nodes_out[:, 1] = _tlog(free_at - now)
        nodes_out[:, 2] = np.log1p(np.fromiter((nd.metrics_age_s for nd in nodes), np.float64, n) / 10.0)
        nodes_out[:, 3] = vram / VRAM_SCALE_GB
        nodes_out[:, 4] = np.maximum(vram - used, 0.0) / np.maximum(vram, 1e-6)
        nodes_out[:, 5] = n_res / 4.0
        nodes_out[:, 6] = largest / max(GANG_SIZES)
        nodes_out[:, 7] = np.log1p(np.fromiter((nd.inflight for nd in nodes), np.float64, n))
        overflow = float(np.log1p(max(0, len(snap.queue) - q) / MAX_QUEUE))
        if q == 0:
            nodes_out[:, 8:] = 0.0
            return EncodedState(
                tasks=np.zeros((0, TASK_FEATURES), np.float32),
                nodes=nodes_out.astype(np.float32),
                pairs=np.zeros((0, n, N_GANG, PAIR_FEATURES), np.float32),
                action_mask=np.array([snap.has_future_events]),
                steps_mask=np.zeros((0, STEP_BUCKETS), bool),
            )
        # ---- per task [Q, ...] from the shape tables, gathered to nodes [Q, N, ...]
        resident = np.stack([res_m[sh.model] for sh in shapes])  # [Q, N]
        warm1 = np.stack([warm1_m[sh.model] for sh in shapes])
        groups = np.stack([grp_m[sh.model] for sh in shapes])  # [Q, N, G]
        sup_k, step_k, load_k, rate_k = tables.stacked(distinct)
        kids = np.fromiter((sh.kid for sh in shapes), np.intp, q)[:, None]
        sup, step, load, rate = sup_k[kids, cidx], step_k[kids, cidx], load_k[kids, cidx], rate_k[kids, cidx]
        scale, in_mbit, out_mbit = np.array([sh.nums for sh in shapes]).T[:, :, None]  # [Q, 1] each
        svc = scale[:, :, None] * step  # warm k-gang service [Q, N, G] (0 where unsupported)
        # k = 1 as placement.estimate prices it: service, + load if cold, + transfer
        s1, load1 = svc[:, :, 0], load[:, :, 0]
        tr_local = out_mbit / rate
        tr_remote = in_mbit / rate + tr_local
        origins = np.fromiter((index.get(t.origin, -2) if t.origin is not None else -1 for t in tasks), np.intp, q)
        local = (origins[:, None] == -1) | (origins[:, None] == np.arange(n))
        allowed = np.stack([sh.allowed for sh in shapes])  # [Q, G]
        model_vram = np.fromiter((sh.vram for sh in shapes), np.float64, q)
        arrival = np.fromiter((t.arrival_s for t in tasks), np.float64, q)
        deadline = np.fromiter((np.nan if t.deadline_s is None else t.deadline_s for t in tasks), np.float64, q)
        has_deadline = ~np.isnan(deadline)
        due = np.where(has_deadline, arrival + np.nan_to_num(deadline), 0.0)

        sup1 = sup[:, :, 0]
        service1 = np.where(sup1, s1 + np.where(warm1, 0.0, load1) + np.where(local, tr_local, tr_remote), 0.0)
        can1 = up & sup1  # [Q, N]
        eligible = up[None, :, None] & sup
        valid = eligible & allowed[:, None, :] & (eligible.sum(1) >= np.array(GANG_SIZES))[:, None, :]
        if exact:
            warm = np.concatenate([warm1[:, :, None], groups[:, :, 1:]], 2)
        else:
            warm = np.concatenate([warm1[:, :, None], np.repeat(resident[:, :, None], N_GANG - 1, 2)], 2)
        service = np.where(valid, svc + np.where(warm, 0.0, load), 0.0)
        finish = start + service1
        slack_after = np.where(has_deadline[:, None], _signed_tlog(due[:, None] - finish), 0.0) * can1
        tl_service1 = _tlog(service1)

        pairs = np.empty((q, n, N_GANG, PAIR_FEATURES), dtype=np.float32)
        pairs[..., 0] = resident[:, :, None]
        pairs[..., 1] = warm1[:, :, None]
        pairs[..., 2] = can1[:, :, None]
        pairs[..., 3] = _tlog(start - now)[None, :, None]
        pairs[..., 4] = (tl_service1 * can1)[:, :, None]
        pairs[..., 5] = (_tlog(finish - now) * can1)[:, :, None]
        pairs[..., 6] = slack_after[:, :, None]
        pairs[..., 7] = (resident | ((vram - used)[None, :] >= model_vram[:, None]))[:, :, None]
        pairs[..., 8] = np.array(GANG_SIZES) / max(GANG_SIZES)
        pairs[..., 9] = valid
        pairs[..., 10] = groups
        pairs[..., 11] = _tlog(service) * valid

        cnt = can1.sum(0)
        nodes_out[:, 8] = np.where(cnt > 0, (tl_service1 * can1).sum(0) / np.maximum(cnt, 1), 0.0)
        nodes_out[:, 9] = resident.mean(0)

        tasks_out = np.stack([sh.static for sh in shapes])
        tasks_out[:, 0] = _tlog(now - arrival)
        tasks_out[:, 6] = np.where(has_deadline, _signed_tlog(due - now), 0.0)
        tasks_out[:, _QPOS] = np.arange(q) / MAX_QUEUE
        tasks_out[:, _QPOS + 1] = overflow
        tasks_out[:, _RESFRAC] = resident.sum(1) / n

        action_mask = np.empty(1 + valid.size, dtype=bool)
        action_mask[0] = snap.has_future_events
        action_mask[1:] = valid.transpose(0, 2, 1).reshape(-1)
        return EncodedState(
            tasks=tasks_out.astype(np.float32),
            nodes=nodes_out.astype(np.float32),
            pairs=pairs,
            action_mask=action_mask,
            steps_mask=np.stack([sh.steps_mask for sh in shapes]),
        )


_QPOS = TASK_FIELDS.index("queue_position")
_RESFRAC = TASK_FIELDS.index("model_resident_fraction")
