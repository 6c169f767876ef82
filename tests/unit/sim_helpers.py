"""Shared helpers for the simulator tests: fixed workloads and a recording run loop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from aigc_policy.placement import Placement
from aigc_policy.scheduler import Scheduler
from aigc_policy.sim import Simulator
from aigc_policy.snapshot import TaskSpec


@dataclass
class ListWorkload:
    items: list[TaskSpec]
    label: str = "fixed list"

    def tasks(self, seed: int) -> Iterator[TaskSpec]:
        # fresh copies: the simulator hands tasks to policies as live objects
        yield from (TaskSpec(**{f: getattr(t, f) for f in TaskSpec.__slots__}) for t in self.items)


@dataclass
class Scripted:
    """Places queue entry 0 on fixed gangs, in order."""

    plan: list[tuple[tuple[int, ...], int]]
    name: str = "scripted"
    calls: int = 0

    def reset(self, seed: int) -> None:
        self.calls = 0

    def decide(self, snap) -> Placement:
        nodes, steps = self.plan[self.calls]
        self.calls += 1
        return Placement(0, nodes, steps)


@dataclass
class Trace:
    """What a run did: placements with their intervals, and every decision time."""

    intervals: dict[int, list[tuple[float, float, str]]] = field(default_factory=dict)
    placed: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    busy_node_s: float = 0.0


def run(sim: Simulator, policy: Scheduler, seed: int = 0) -> Trace:
    trace = Trace()
    policy.reset(seed)
    snap = sim.snapshot()
    while not sim.done:
        trace.times.append(snap.now)
        placement = policy.decide(snap)
        arrivals = {t.id: t.arrival_s for t in snap.queue}
        result = sim.step(placement)
        if result.placed:
            start = arrivals[result.task_id] + result.wait_s
            finish = start + result.service_s
            for i in result.nodes:
                trace.intervals.setdefault(i, []).append((start, finish, result.task_id))
            trace.placed.append(result.task_id)
            trace.busy_node_s += result.service_s * len(result.nodes)
    return trace
