"""Event-driven cluster simulator: the environment behind bench and RL training.

Time is continuous and only moves when the policy waits (step(None)) or when nothing is left
to decide. A placement reserves its gang at once: it starts at max(now, free_at of every
member), so a policy may queue work behind busy nodes, and the snapshot always shows the
planned state (free_at and residency after the loads already decided). All pricing goes
through aigc_policy.placement so the simulator agrees with every policy and the operator.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from aigc_policy.placement import (
    Estimate,
    Placement,
    allowed_gang_sizes,
    earliest_finish,
    eligible_nodes,
    estimate,
    min_acceptable_steps,
)
from aigc_policy.scenario import NodeSpec, Scenario
from aigc_policy.sim.metrics import EpisodeMetrics
from aigc_policy.sim.workload import ScenarioWorkload, Workload
from aigc_policy.snapshot import ClusterSnapshot, NodeState, Resident, TaskSpec

log = logging.getLogger(__name__)

_COMPLETE, _DOWN, _UP, _FREE = 0, 1, 2, 3  # _FREE: a what-if copy's node frees (its work is unknown)
_EPS = 1e-9


class InvalidPlacement(ValueError):
    """A placement the cluster cannot run (bad index, gang size, node, or steps)."""


@dataclass(slots=True)
class StepResult:
    """Outcome of one decision. The task fields describe the placed task (planned at placement)."""

    placed: bool
    elapsed_s: float  # simulated time since the previous decision
    done: bool
    task_id: str | None = None
    nodes: tuple[int, ...] = ()  # the gang, also when the simulator forced the placement
    steps: int = 0
    wait_s: float = 0.0
    service_s: float = 0.0
    response_s: float = 0.0
    cold: bool = False
    quality: float = 0.0
    slo_met: bool = False
    forced: bool = False  # the policy waited with nothing left to wait for; the simulator placed


@dataclass(slots=True, eq=False)
class _Reservation:
    task: TaskSpec
    nodes: tuple[int, ...]
    est: Estimate
    slo_met: bool
    cancelled: bool = False


def slo_met(task: TaskSpec, response_s: float, quality: float) -> bool:
    return (task.deadline_s is None or response_s <= task.deadline_s + _EPS) and (
        task.min_quality is None or quality >= task.min_quality - _EPS
    )


class _NoArrivals:
    label = "no arrivals"

    def tasks(self, seed: int) -> Iterator[TaskSpec]:
        return iter(())


class Simulator:
    """`reset(seed)`, then alternate `snapshot()` / `step(placement or None)` until `done`."""

    def __init__(self, scenario: Scenario, workload: Workload | None = None, seed: int = 0) -> None:
        self.scenario = scenario
        self.workload = workload or ScenarioWorkload(scenario)
        self.seed = seed
        self.perf = scenario.perf
        self._index = {n.name: i for i, n in enumerate(scenario.nodes)}
        self._admissible: dict[tuple[str, int, int, tuple[int, ...] | None], bool] = {}
        self.reset(seed)

    @classmethod
    def what_if(cls, snap: ClusterSnapshot, arrivals: Sequence[TaskSpec] = ()) -> Simulator:
        """A simulator that continues from `snap`, then `arrivals` (in time order): a planner's model.

        Nodes, residency and the visible queue are copies, so stepping it leaves `snap` alone.
        Work already placed is known only through each node's free_at; waiting moves time to the
        next of those instants. No failures happen in it.
        """
        nodes = tuple(NodeSpec(n.name, n.gpu_class) for n in snap.nodes)
        scenario = Scenario("what-if", "", snap.perf, nodes, snap.gang_sizes, None, 0, {}, (), {}, {})  # type: ignore[arg-type]
        sim = cls(scenario, _NoArrivals())  # reset() ran on an empty cluster; now take the snapshot's state
        sim.now = sim._last_decision = snap.now
        sim.nodes = [replace(n, resident=list(n.resident)) for n in snap.nodes]
        sim.window = list(snap.queue)
        sim._arrivals = iter(arrivals)
        sim._next = next(sim._arrivals, None)
        for t in sorted({n.free_at for n in sim.nodes if n.free_at > snap.now}):
            sim._push(t, _FREE, None)
            sim.active += 1
        sim._snap = ClusterSnapshot(sim.now, sim.window, sim.nodes, sim.perf, snap.gang_sizes, True, snap.capable)
        sim.done = False
        sim._settle()
        return sim

    # ----- environment API -------------------------------------------------------------
    def reset(self, seed: int | None = None) -> ClusterSnapshot | None:
        """Start a new episode; the first snapshot, or None if the workload is empty."""
        self.seed = self.seed if seed is None else seed
        self.now = 1.0 if self.scenario.bugs.get("clock_starts_at_1") else 0.0
        self.nodes = [NodeState(n.name, n.gpu_class) for n in self.scenario.nodes]
        for spec, node in zip(self.scenario.nodes, self.nodes, strict=True):
            node.resident = [Resident(m, (node.name,)) for m in spec.resident]
        self.window: list[TaskSpec] = []
        self.backlog: deque[TaskSpec] = deque()
        self.events: list[tuple[float, int, int, object]] = []
        self.active = 0
        self._seq = 0
        self.metrics = EpisodeMetrics(nodes=len(self.nodes))
        self._arrivals: Iterator[TaskSpec] = self.workload.tasks(self.seed)
        self._next: TaskSpec | None = next(self._arrivals, None)
        self._rng = random.Random(self.seed ^ 0x5EED)
        self._schedule_failures()
        self._snap = ClusterSnapshot(self.now, self.window, self.nodes, self.perf, self.scenario.gang_sizes)
        self.done = False
        self._last_decision = self.now
        self._settle()
        return None if self.done else self.snapshot()

    def snapshot(self) -> ClusterSnapshot:
        snap = self._snap
        snap.now = self.now
        snap.has_future_events = self._next is not None or self.active > 0 or self._pending_up()
        return snap

    def step(self, placement: Placement | None) -> StepResult:
        if self.done:
            raise RuntimeError("episode is done; call reset()")
        self.metrics.decisions += 1
        forced = False
        if placement is None:
            if self.snapshot().has_future_events:
                self.metrics.waits += 1
                self._advance()
                self._settle()
                return self._stamp(StepResult(False, 0.0, False))
            placement = self._forced_placement()
            forced = True
            self.metrics.forced += 1
            if placement is None:
                self._reject(0)
                self._settle()
                return self._stamp(StepResult(False, 0.0, False, forced=True))
        result = self._apply(placement, forced)
        self._settle()
        return self._stamp(result)

    # ----- placement -------------------------------------------------------------------
    def _apply(self, p: Placement, forced: bool) -> StepResult:
        """Reserve the gang; the placed task's outcome is known now (planned at placement)."""
        self._validate(p)
        task = self.window[p.task_index]
        est = estimate(self._snap, task, p.nodes, p.steps)  # _snap is refreshed after every step
        self._load(task.model, p.nodes, est.cold)
        finish = est.finish_s
        for i in p.nodes:
            node = self.nodes[i]
            node.free_at = finish
            node.inflight += 1
        self.active += 1
        response = est.done_s - task.arrival_s
        met = slo_met(task, response, est.quality)
        self._push(finish, _COMPLETE, _Reservation(task, p.nodes, est, met))
        self._take(p.task_index)
        wait = est.start_s - task.arrival_s
        # positional (in field order) because this runs on every decision; _stamp sets elapsed_s, done
        return StepResult(True, 0.0, False, task.id, p.nodes, p.steps, wait, est.service_s, response,
                          est.cold, est.quality, met, forced)

    def _validate(self, p: Placement) -> None:
        if not 0 <= p.task_index < len(self.window):
            raise InvalidPlacement(f"task_index {p.task_index} outside the visible queue of {len(self.window)}")
        task = self.window[p.task_index]
        k = len(p.nodes)
        if k not in allowed_gang_sizes(self._snap, task):
            raise InvalidPlacement(f"gang size {k} not allowed for task {task.id}")
        eligible = eligible_nodes(self._snap, task, k)  # only valid indices of up, capable nodes
        for i in p.nodes:
            if i not in eligible:
                raise InvalidPlacement(f"node index {i} cannot run task {task.id} (k={k}): unknown, down or unfit")
        if k > 1 and len(set(p.nodes)) != k:
            raise InvalidPlacement(f"gang {p.nodes} must name {k} distinct nodes")
        if not task.min_steps <= p.steps <= task.max_steps:
            raise InvalidPlacement(f"steps {p.steps} outside {task.min_steps}..{task.max_steps} for task {task.id}")

    def _load(self, model: str, gang: tuple[int, ...], cold: bool) -> None:
        """Residency after this placement: EAT group teardown, or per-node LRU by VRAM."""
        if self.perf.reuse == "exact-group":
            if cold:
                self._regroup(model, [self.nodes[i] for i in gang])
            return
        members = [self.nodes[i] for i in gang]
        group = tuple(sorted(n.name for n in members))
        need = self.perf.model_vram_gb(model)
        for node in members:
            held = next((r for r in node.resident if r.model == model), None)
            if held is not None:
                node.resident.remove(held)
                node.resident.append(held)
                continue
            budget = self.perf.class_vram_gb(node.gpu_class) - need
            while node.resident and sum(self.perf.model_vram_gb(r.model) for r in node.resident) > budget:
                node.resident.pop(0)
            node.resident.append(Resident(model, group))

    def _regroup(self, model: str, members: list[NodeState]) -> None:
        """EAT's cold load: tear down every group a member belongs to, then load as one new group."""
        for node in members:
            for old in list(node.resident):
                self._teardown(old)
        loaded = Resident(model, tuple(sorted(n.name for n in members)))
        for node in members:
            node.resident = [loaded]

    def _teardown(self, resident: Resident) -> None:
        for name in resident.group:
            node = self.nodes[self._index[name]]
            node.resident = [r for r in node.resident if r != resident]

    def _forced_placement(self) -> Placement | None:
        task = self.window[0]
        best = earliest_finish(self.snapshot(), task, min_acceptable_steps(self.perf, task))
        if best is None:
            return None
        log.debug("forced placement of %s at t=%.3f", task.id, self.now)
        return Placement(0, best[0], min_acceptable_steps(self.perf, task))

    # ----- queue -----------------------------------------------------------------------
    def _take(self, index: int) -> TaskSpec:
        task = self.window.pop(index)
        if self.backlog:
            self.window.append(self.backlog.popleft())
        return task

    def _enqueue(self, task: TaskSpec, front: bool = False) -> None:
        limit = self.scenario.visible_queue
        if front:
            self.window.insert(0, task)
            if limit is not None and len(self.window) > limit:
                self.backlog.appendleft(self.window.pop())
        elif limit is None or len(self.window) < limit:
            self.window.append(task)
        else:
            self.backlog.append(task)

    def _reject(self, index: int) -> None:
        task = self._take(index)
        self.metrics.rejected += 1
        log.debug("rejected %s: no node can run it", task.id)

    def _admit(self, task: TaskSpec) -> None:
        key = (task.model, task.width, task.height, task.gang_sizes)
        ok = self._admissible.get(key)
        if ok is None:
            ks = allowed_gang_sizes(self._snap, task)
            ok = self._admissible[key] = self.scenario.runnable_anywhere(task.model, task.width, task.height, ks)
        if ok:
            self._enqueue(task)
        else:
            self.metrics.rejected += 1

    # ----- time ------------------------------------------------------------------------
    def _push(self, at: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, payload))

    def _advance(self) -> bool:
        """Jump to the next event time and process everything due then; False if there is none."""
        arrival, events = self._next, self.events
        if events:
            t = events[0][0]
            if arrival is not None and arrival.arrival_s < t:
                t = arrival.arrival_s
        elif arrival is not None:
            t = arrival.arrival_s
        else:
            return False
        if t > self.now:  # time never goes backwards, even for an event scheduled in the past
            self.now = t
        while events and events[0][0] <= self.now:
            _, _, kind, payload = heapq.heappop(events)
            if kind == _COMPLETE:
                self._complete(payload)  # type: ignore[arg-type]
            elif kind == _FREE:
                self.active -= 1
            elif kind == _DOWN:
                self._node_down(payload)  # type: ignore[arg-type]
            else:
                self._node_up(payload)  # type: ignore[arg-type]
        while self._next is not None and self._next.arrival_s <= self.now:
            self._admit(self._next)
            self._next = next(self._arrivals, None)
        return True

    def _settle(self) -> None:
        """Move time on while there is nothing to decide; finish the episode at the end."""
        while not self.window:
            if (self._next is None and self.active == 0) or not self._advance():
                self.done = True
                return

    def _complete(self, res: _Reservation) -> None:
        if res.cancelled:
            return
        self.active -= 1
        for i in res.nodes:
            self.nodes[i].inflight -= 1
        est, arrival = res.est, res.task.arrival_s
        done = est.done_s
        # positional (wait, service, response, quality, cold, slo, busy node-seconds, done): per task
        self.metrics.record(
            est.start_s - arrival, est.service_s, done - arrival, est.quality, est.cold, res.slo_met,
            est.service_s * len(res.nodes), done,
        )  # fmt: skip

    # ----- node failures ---------------------------------------------------------------
    def _schedule_failures(self) -> None:
        for event in self.scenario.failures.get("events", []):
            kind = _UP if event.get("up") else _DOWN
            self._push(float(event["at_s"]), kind, self._index[event["node"]])
        mtbf = self.scenario.failures.get("mtbf_s")
        if mtbf:
            for i in range(len(self.nodes)):
                self._push(self.now + self._rng.expovariate(1.0 / float(mtbf)), _DOWN, i)

    def _pending_up(self) -> bool:
        return any(kind == _UP for _, _, kind, _ in self.events) if not all(n.up for n in self.nodes) else False

    def _node_down(self, i: int) -> None:
        node = self.nodes[i]
        if not node.up:
            return
        if self._next is None and self.active == 0 and not self.window:
            return
        node.up = False
        for _, _, kind, payload in self.events:
            if kind == _COMPLETE and i in payload.nodes and not payload.cancelled:  # type: ignore[attr-defined]
                self._cancel(payload)  # type: ignore[arg-type]
        for old in list(node.resident):
            self._teardown(old) if self.perf.reuse == "exact-group" else node.resident.remove(old)
        node.free_at = self.now
        mttr = float(self.scenario.failures.get("mttr_s", 60.0))
        if self.scenario.failures.get("mtbf_s"):
            self._push(self.now + self._rng.expovariate(1.0 / mttr), _UP, i)

    def _cancel(self, res: _Reservation) -> None:
        res.cancelled = True
        self.active -= 1
        for j in res.nodes:
            self.nodes[j].inflight -= 1
        self.metrics.requeued += 1
        self._enqueue(res.task, front=True)

    def _node_up(self, i: int) -> None:
        node = self.nodes[i]
        node.up = True
        node.free_at = max(node.free_at, self.now)
        mtbf = self.scenario.failures.get("mtbf_s")
        if mtbf:
            self._push(self.now + self._rng.expovariate(1.0 / float(mtbf)), _DOWN, i)

    # ----- results ---------------------------------------------------------------------
    def _stamp(self, result: StepResult) -> StepResult:
        """Fill in the time since the previous decision and whether the episode has ended."""
        result.elapsed_s = self.now - self._last_decision
        result.done = self.done
        self._last_decision = self.now
        self.snapshot()  # callers may hold the snapshot object: keep it current
        return result
