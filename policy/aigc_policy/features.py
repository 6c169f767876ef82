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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aigc_policy.actions import bucket_steps
from aigc_policy.placement import STEP_BUCKETS, allowed_gang_sizes, min_acceptable_steps
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


class _GrowingTable:
    """Float rows appended one at a time and gathered by index; storage doubles when full."""

    def __init__(self, width: int) -> None:
        self.rows = np.empty((64, width))
        self.size = 0

    def append(self, row: list[float]) -> int:
        if self.size == len(self.rows):
            self.rows = np.concatenate([self.rows, np.empty_like(self.rows)])
        self.rows[self.size] = row
        self.size += 1
        return self.size - 1


class _ShapeRows:
    """What the encoder needs of each task shape (model, size, steps, floor, gangs, work, transfer)
    that does not change while the task waits, one float row per shape: the static task fields
    (NaN where filled per decision), gang sizes allowed, steps mask, model VRAM, model id and the
    id of its per-class block (_ClassTables.block_id). Cached across decisions (a task waits
    through many, and shapes repeat) in one table per (distinct node classes, cluster gang sizes),
    gathered with one fancy index per decision.
    """

    STATIC, ALLOWED = slice(0, TASK_FEATURES), slice(TASK_FEATURES, TASK_FEATURES + N_GANG)
    STEPS = slice(ALLOWED.stop, ALLOWED.stop + STEP_BUCKETS)
    VRAM, MODEL, BLOCK = range(STEPS.stop, STEPS.stop + 3)
    WIDTH = BLOCK + 1

    def __init__(self) -> None:
        # (distinct node classes, cluster gang sizes) -> task shape key -> row of that group's table
        self.ids: dict[tuple, dict[tuple, int]] = {}
        self.tables: dict[tuple, _GrowingTable] = {}

    def __len__(self) -> int:
        return sum(table.size for table in self.tables.values())

    def known(self, group: tuple) -> dict[tuple, int]:
        ids = self.ids.get(group)
        if ids is None:
            ids = self.ids[group] = {}
            self.tables[group] = _GrowingTable(self.WIDTH)
        return ids

    def add(self, group: tuple, key: tuple, row: list[float]) -> int:
        hit = self.ids[group][key] = self.tables[group].append(row)
        return hit

    @staticmethod
    def row(snap: ClusterSnapshot, t: TaskSpec, classes: tuple[str, ...], tables: _ClassTables) -> list[float]:
        perf = snap.perf
        floor = min_acceptable_steps(perf, t)
        allowed = allowed_gang_sizes(snap, t)
        flags = [float(k in allowed) for k in GANG_SIZES]
        vram = tables.model_vram(t.model)
        static = [
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
            vram / VRAM_SCALE_GB,
            tables.quality(t.model, t.max_steps),
            tables.quality(t.model, floor),
            math.nan,
            math.log(t.work_scale),
            math.log1p((t.input_mbit + t.output_mbit) / 100.0),
        ]
        steps = bucket_steps(perf, t)
        steps_mask = [float(s not in steps[:b]) for b, s in enumerate(steps)]
        model = tables.model_id(t.model)
        return [*static, *flags, *steps_mask, vram, model, tables.block_id(t, floor, classes)]


class _ClassTables:
    """PerfModel look-ups per (distinct classes, model, size): [C, G] supported (0/1), seconds per
    step (0 where unsupported) and cold load, and link rate [C] (inf: transfers are free); and
    the blocks built from them, a task's numbers per distinct class (block_id)."""

    # a block is PER_CLASS columns per distinct class: per gang size supported (0/1), log of the
    # warm and of the cold k-gang service; then for k = 1 supported, service, cold load and
    # transfer (local, remote)
    SUP, TL_WARM, TL_COLD = (slice(i * N_GANG, (i + 1) * N_GANG) for i in range(3))
    K1 = slice(TL_COLD.stop, TL_COLD.stop + 5)
    PER_CLASS = K1.stop

    def __init__(self, perf: PerfModel) -> None:
        self.perf = perf
        self._look_ups: dict[tuple, tuple[np.ndarray, ...]] = {}
        self.blocks: dict[tuple, int] = {}  # see block_id
        self.block_tables: dict[tuple[str, ...], _GrowingTable] = {}
        self._quality: dict[tuple[str, int], float] = {}
        self.vram_cache: dict[str, float] = {}
        self.model_ids: dict[str, int] = {}

    def model_id(self, model: str) -> int:
        return self.model_ids.setdefault(model, len(self.model_ids))

    def look_up(self, classes: tuple[str, ...], model: str, w: int, h: int) -> tuple[np.ndarray, ...]:
        key = (classes, model, w, h)
        hit = self._look_ups.get(key)
        if hit is None:
            perf = self.perf
            sup = np.array([[bool(perf.supports(c, model, w, h, k)) for k in GANG_SIZES] for c in classes])
            step = np.array([[perf.step_seconds(c, model, w, h, k) if ok else 0.0
                              for k, ok in zip(GANG_SIZES, row, strict=True)]
                             for c, row in zip(classes, sup, strict=True)], dtype=np.float64)
            load = np.array([[perf.load_seconds(c, model, k) for k in GANG_SIZES] for c in classes], dtype=np.float64)
            rates = [perf.link_mbps(c) for c in classes]
            rate = np.array([np.inf if r is None else r for r in rates], dtype=np.float64)
            hit = self._look_ups[key] = (sup.astype(np.float64), step, load, rate)
        return hit

    def block_id(self, t: TaskSpec, floor: int, classes: tuple[str, ...]) -> int:
        """Row of block_rows(classes) holding the task's numbers per distinct class, shared by the
        shapes that differ only in fields a block does not read (priority, deadline, quality
        floor at equal steps)."""
        shipped = t.input_mbit > 0.0 or t.output_mbit > 0.0
        in_mbit, out_mbit = (t.input_mbit, t.output_mbit) if shipped else (0.0, 0.0)
        key = (classes, t.model, t.width, t.height, floor, t.work_scale, in_mbit, out_mbit)
        hit = self.blocks.get(key)
        if hit is None:
            sup, step, load, rate = self.look_up(classes, t.model, t.width, t.height)
            svc = floor * t.work_scale * step  # warm k-gang service [C, G] (0 where unsupported)
            tr_local = out_mbit / rate
            tr_remote = in_mbit / rate + tr_local
            # warm: + 0.0 (not svc itself) as adding a zero load would, so -0.0 reads 0.0
            tl_warm, tl_cold = _tlog(svc + 0.0), _tlog(svc + load)
            k1 = [sup[:, :1], svc[:, :1], load[:, :1], tr_local[:, None], tr_remote[:, None]]
            block = np.concatenate([sup, tl_warm, tl_cold, *k1], 1).ravel().tolist()
            table = self.block_tables.get(classes)
            if table is None:
                table = self.block_tables[classes] = _GrowingTable(len(classes) * self.PER_CLASS)
            hit = self.blocks[key] = table.append(block)
        return hit

    def block_rows(self, classes: tuple[str, ...]) -> np.ndarray:
        return self.block_tables[classes].rows

    def drop_blocks(self) -> None:
        self.blocks.clear()
        self.block_tables.clear()

    def quality(self, model: str, steps: int) -> float:
        q = self._quality.get((model, steps))
        if q is None:
            q = self._quality[(model, steps)] = float(self.perf.quality(model, steps))
        return q

    def model_vram(self, model: str) -> float:
        v = self.vram_cache.get(model)
        if v is None:
            v = self.vram_cache[model] = float(self.perf.model_vram_gb(model))
        return v


def _shape_key(t: TaskSpec) -> tuple:
    return (t.model, t.width, t.height, t.min_steps, t.max_steps, t.min_quality, t.gang_sizes,
            t.priority, t.deadline_s is None, t.work_scale, t.input_mbit, t.output_mbit)


class Encoder:
    """Builds EncodedState from snapshots; keeps per-shape tables for the PerfModel it last saw.

    Vectorised over (task, node, gang): the Python work per decision is one pass over the nodes
    and their residents and one dictionary look-up per visible task.
    """

    MAX_SHAPES = 4096

    def __init__(self, max_queue: int = MAX_QUEUE) -> None:
        self.max_queue = max_queue
        self._queue_position = np.arange(max_queue) / MAX_QUEUE
        self._shapes = _ShapeRows()
        self._classes: dict[tuple[str, ...], tuple[tuple[str, ...], np.ndarray, np.ndarray]] = {}
        self._tables: _ClassTables | None = None

    def _reset_if_new_perf(self, perf: PerfModel) -> _ClassTables:
        if self._tables is None or self._tables.perf is not perf:
            self._tables = _ClassTables(perf)
            self._shapes = _ShapeRows()
            self._classes.clear()
        elif len(self._shapes) > self.MAX_SHAPES:
            self._shapes = _ShapeRows()
            if len(self._tables.blocks) > self.MAX_SHAPES:  # only with the shapes: they hold block ids
                self._tables.drop_blocks()
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

    def _shape_rows(
        self, snap: ClusterSnapshot, tasks: list[TaskSpec], distinct: tuple[str, ...], tables: _ClassTables
    ) -> np.ndarray:
        """[Q, _ShapeRows.WIDTH] rows of the visible tasks (a copy: safe to fill in)."""
        shapes = self._shapes
        group = (distinct, snap.gang_sizes)
        known = shapes.known(group)
        ids = []
        for t in tasks:
            key = _shape_key(t)
            hit = known.get(key)
            if hit is None:
                hit = shapes.add(group, key, _ShapeRows.row(snap, t, distinct, tables))
            ids.append(hit)
        return shapes.tables[group].rows[ids]

    @staticmethod
    def _residency(snap: ClusterSnapshot, tables: _ClassTables) -> tuple[np.ndarray, ...]:
        """One pass over nodes and residents: VRAM used [N], residents [N], largest group [N],
        and per model id (the models of every queue seen so far, so all of this one's) resident
        [M, N], warm alone [M, N], warm k-group anchored here [M, N, G]."""
        nodes, n, n_models = snap.nodes, len(snap.nodes), len(tables.model_ids)
        exact = snap.perf.reuse == "exact-group"
        vram_of, vram_cache, ids = tables.model_vram, tables.vram_cache, tables.model_ids
        used, n_res, largest = [0.0] * n, [0] * n, [0] * n
        res_at: list[int] = []  # flat indices into [M, N]
        alone_at: list[int] = []
        group_at: list[int] = []  # flat indices into [M, N, G]
        names: set[str] | None = None
        for j, nd in enumerate(nodes):
            residents = nd.resident
            if not residents:
                continue
            n_res[j] = len(residents)
            total, big = 0.0, 0
            for r in residents:
                model, group = r.model, r.group
                vram = vram_cache.get(model)
                total += vram if vram is not None else vram_of(model)
                size = len(group)
                if size > big:
                    big = size
                m = ids.get(model)
                if m is None:  # not a model of any queue seen: no task reads it
                    continue
                at = m * n + j
                res_at.append(at)
                alone = size == 1 and group[0] == nd.name
                if exact and alone:
                    alone_at.append(at)
                if size in _GANG_INDEX:
                    if not alone and names is None:
                        names = {other.name for other in nodes}
                    if alone or names.issuperset(group):  # type: ignore[union-attr]
                        group_at.append(at * N_GANG + _GANG_INDEX[size])
            used[j], largest[j] = total, big
        resident = np.zeros((n_models, n), bool)
        resident.flat[res_at] = True
        warm1 = resident
        if exact:
            warm1 = np.zeros((n_models, n), bool)
            warm1.flat[alone_at] = True
        groups = np.zeros((n_models, n, N_GANG), bool)
        groups.flat[group_at] = True
        used_a, n_res_a, largest_a = np.array([used, n_res, largest], np.float64)
        return used_a, n_res_a, largest_a, resident, warm1, groups

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
        rows = self._shape_rows(snap, tasks, distinct, tables)  # registers the queue's model ids first
        used, n_res, largest, res_m, warm1_m, grp_m = self._residency(snap, tables)
        # ---- nodes
        # one pass over the nodes; copied so that each column is contiguous like the arrays it replaces
        up_f, free_at, metrics_age, inflight = np.array(
            [(nd.up, nd.free_at, nd.metrics_age_s, nd.inflight) for nd in nodes], np.float64
        ).T.copy()
        up = up_f != 0.0
        start = np.maximum(now, free_at)
        vram = class_vram[cidx]
        nodes_out = np.empty((n, NODE_FEATURES), dtype=np.float64)
        nodes_out[:, 0] = up
        nodes_out[:, 1] = busy_for = _tlog(free_at - now)  # = _tlog(start - now): start is max(now, free_at)
        nodes_out[:, 2] = np.log1p(metrics_age / 10.0)
        nodes_out[:, 3] = vram / VRAM_SCALE_GB
        nodes_out[:, 4] = np.maximum(vram - used, 0.0) / np.maximum(vram, 1e-6)
        nodes_out[:, 5] = n_res / 4.0
        nodes_out[:, 6] = largest / max(GANG_SIZES)
        nodes_out[:, 7] = np.log1p(inflight)
        if q == 0:
            nodes_out[:, 8:] = 0.0
            return EncodedState(
                tasks=np.zeros((0, TASK_FEATURES), np.float32),
                nodes=nodes_out.astype(np.float32),
                pairs=np.zeros((0, n, N_GANG, PAIR_FEATURES), np.float32),
                action_mask=np.array([snap.has_future_events]),
                steps_mask=np.zeros((0, STEP_BUCKETS), bool),
            )
        # ---- per task [Q, ...] from the shape rows, per distinct class [Q, C, ...] (C is small),
        # gathered to nodes [Q, N, ...] only once combined
        model = rows[:, _ShapeRows.MODEL].astype(np.intp)
        resident, warm1, groups = res_m[model], warm1_m[model], grp_m[model]  # [Q, N], [Q, N], [Q, N, G]
        blocks = tables.block_rows(distinct)[rows[:, _ShapeRows.BLOCK].astype(np.intp)]
        per_class = blocks.reshape(q, len(distinct), _ClassTables.PER_CLASS)
        sup = per_class[:, :, _ClassTables.SUP]  # [Q, C, G] 0/1
        per_node = np.take(per_class, cidx, 1)  # [Q, N, PER_CLASS]
        # k = 1 as placement.estimate prices it: service, + load if cold, + transfer
        k1 = per_node[:, :, _ClassTables.K1].transpose(2, 0, 1)  # [5, Q, N]
        sup1, s1, load1 = k1[0] > 0.5, k1[1], k1[2]
        transfer = self._transfer(tasks, nodes, k1[3], k1[4])
        allowed = rows[:, _ShapeRows.ALLOWED] > 0.5  # [Q, G]
        model_vram = rows[:, _ShapeRows.VRAM]
        has_deadline = rows[:, _ShapeRows.STATIC.start + _HAS_DEADLINE] > 0.5
        times = [(t.arrival_s, t.arrival_s + (t.deadline_s or 0.0)) for t in tasks]
        arrival, due = np.array(times, np.float64).T  # due: read where has_deadline

        service1 = np.where(sup1, s1 + np.where(warm1, 0.0, load1) + transfer, 0.0)
        can1 = up & sup1  # [Q, N]
        up_count = np.bincount(cidx, up, len(distinct))  # [C]
        fits = up_count @ sup >= _GANG_SIZES  # enough eligible nodes [Q, G]
        usable = np.zeros((q, len(distinct) + 1, N_GANG), bool)  # down nodes read the extra last class
        np.logical_and(sup > 0.5, (allowed & fits)[:, None, :], out=usable[:, :-1])
        valid = np.take(usable, np.where(up, cidx, len(distinct)), 1)
        if perf.reuse == "exact-group":
            warm = np.concatenate([warm1[:, :, None], groups[:, :, 1:]], 2)
        else:
            warm = np.repeat(resident[:, :, None], N_GANG, 2)
        tl_service = np.where(warm, per_node[:, :, _ClassTables.TL_WARM], per_node[:, :, _ClassTables.TL_COLD])  # log k-gang service [Q, N, G]
        finish = start + service1
        slack_after = _signed_tlog(due[:, None] - finish) * (can1 & has_deadline[:, None])
        tl_service1 = _tlog(service1) * can1

        # fields 0-7 do not depend on the gang size: built once per (task, node), then repeated
        per_pair = np.empty((q, n, PAIR_FEATURES), dtype=np.float32)
        per_pair[..., 0] = resident
        per_pair[..., 1] = warm1
        per_pair[..., 2] = can1
        per_pair[..., 3] = busy_for[None, :]
        per_pair[..., 4] = tl_service1
        per_pair[..., 5] = _tlog(finish - now) * can1
        per_pair[..., 6] = slack_after
        per_pair[..., 7] = resident | ((vram - used)[None, :] >= model_vram[:, None])
        pairs = np.repeat(per_pair, N_GANG, axis=1).reshape(q, n, N_GANG, PAIR_FEATURES)
        pairs[..., 8] = _GANG_FRACTION
        pairs[..., 9] = valid
        pairs[..., 10] = groups
        pairs[..., 11] = np.where(valid, tl_service, 0.0)

        cnt = can1.sum(0)
        nodes_out[:, 8] = tl_service1.sum(0) / np.maximum(cnt, 1)  # 0 where no task can run: its terms are 0
        nodes_out[:, 9] = resident.sum(0) / q

        tasks_out = rows[:, _ShapeRows.STATIC]
        tasks_out[:, 0] = _tlog(now - arrival)
        tasks_out[:, 6] = np.where(has_deadline, _signed_tlog(due - now), 0.0)
        tasks_out[:, _QPOS] = self._queue_position[:q]
        tasks_out[:, _QPOS + 1] = float(np.log1p(max(0, len(snap.queue) - q) / MAX_QUEUE))
        tasks_out[:, _RESFRAC] = resident.sum(1) / n

        action_mask = np.empty(1 + valid.size, dtype=bool)
        action_mask[0] = snap.has_future_events
        action_mask[1:].reshape(q, N_GANG, n)[...] = valid.transpose(0, 2, 1)
        return EncodedState(
            tasks=tasks_out.astype(np.float32),
            nodes=nodes_out.astype(np.float32),
            pairs=pairs,
            action_mask=action_mask,
            steps_mask=rows[:, _ShapeRows.STEPS] > 0.5,
        )

    @staticmethod
    def _transfer(
        tasks: list[TaskSpec], nodes: Sequence[NodeState], local: np.ndarray, remote: np.ndarray
    ) -> np.ndarray:
        """[Q, N] transfer seconds: `local` where the task enters at the node (or has no origin)."""
        origins = [t.origin for t in tasks]
        if origins.count(None) == len(origins):
            return local
        index = {nd.name: j for j, nd in enumerate(nodes)}
        at = np.array([-1 if o is None else index.get(o, -2) for o in origins], np.intp)[:, None]
        return np.where((at == -1) | (at == np.arange(len(nodes))), local, remote)


_GANG_SIZES = np.array(GANG_SIZES)
_GANG_FRACTION = _GANG_SIZES / max(GANG_SIZES)
_GANG_INDEX = {k: g for g, k in enumerate(GANG_SIZES)}
_QPOS = TASK_FIELDS.index("queue_position")
_RESFRAC = TASK_FIELDS.index("model_resident_fraction")
_HAS_DEADLINE = TASK_FIELDS.index("has_deadline")
