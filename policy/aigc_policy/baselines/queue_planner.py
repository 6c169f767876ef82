"""Queue planner: plan the whole visible queue under a few priority rules, follow the cheapest plan.

Every baseline before this one commits each task on arrival to the node that finishes it first.
Node queues are FIFO, so under load a 0.3 s sd15 image waits behind a 10 s SDXL one that
happened to arrive earlier. This planner keeps tasks in the cluster queue instead and decides
their order at the moment a node frees:

1. For each priority rule (FIFO, shortest service first, earliest deadline first, and two
   mixes of service and deadline slack), it list-schedules the visible queue: task by task in
   the rule's order, the gang that finishes it first given the tasks planned before it (late
   binding: no node is reserved until the task can start).
2. A plan costs the summed response time of its tasks plus `miss` seconds per planned SLO
   miss. The cheapest plan is followed: its first task that can start now on idle nodes starts;
   if none can, the planner waits for the next event.

Plans use the task's smallest allowed gang (the throughput-efficient choice under load). Only
while at most `gangs` tasks wait does a FIFO plan over every gang size compete too (idle
capacity is then better spent on patch parallelism, as `eft` does).

Holding tasks has a price the planner must respect: the visible queue is bounded, and a task
beyond it cannot be seen (a short task that arrives behind a full window waits unseen). So once
more than `hold` tasks wait, the cheapest plan's first task is committed at once on the gang that
finishes it first, as `eft` would. By default `hold` is the bound scenario's visible queue minus
one. `commit=RULE` commits the first task of that rule's order instead: a choice a learned
student can copy from what a task token sees (rl/queue_order.py), where the cheapest of five
plans is a global comparison it cannot see.

It plans the known queue only (no guessed arrivals) and ignores the model loads that earlier
planned tasks would cause, so a decision costs a few list schedules of the visible queue:
cheap enough for the simulator and as a teacher (`aigc-edge train --teacher queue-plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aigc_policy.baselines.common import option_number
from aigc_policy.features import MAX_QUEUE
from aigc_policy.placement import Estimate, Placement, candidate_gangs, estimate, min_acceptable_steps
from aigc_policy.scenario import Scenario
from aigc_policy.snapshot import ClusterSnapshot, TaskSpec

MISS_PENALTY_S = 10.0
GANGS_UP_TO = 2
UNBOUND_HOLD = MAX_QUEUE - 1  # without a scenario: commit before the EAT encoder's window fills
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class _Row:
    """A visible task with its options: every candidate gang's estimate at its fewest steps."""

    index: int
    task: TaskSpec
    steps: int
    options: dict[tuple[int, ...], Estimate]
    smallest: tuple[tuple[int, ...], ...]  # the gangs of its smallest runnable size
    service_s: float  # on its fastest smallest-size gang
    deadline_at: float  # absolute; inf without a deadline


@dataclass(frozen=True, slots=True)
class Plan:
    cost: float
    rule: str
    first: Placement | None  # the plan's first task that can start now, if any
    order: tuple[int, ...]  # row positions in the rule's order


Rule = Callable[[Sequence[_Row], float], list[int]]


def _fifo(rows: Sequence[_Row], now: float) -> list[int]:
    return list(range(len(rows)))


def _shortest_first(rows: Sequence[_Row], now: float) -> list[int]:
    return sorted(range(len(rows)), key=lambda j: (rows[j].service_s, j))


def _hopeless(row: _Row, now: float) -> bool:
    """It misses its deadline even if it started now on its fastest gang."""
    return now + row.service_s > row.deadline_at


def _earliest_deadline(rows: Sequence[_Row], now: float) -> list[int]:
    return sorted(range(len(rows)), key=lambda j: (_hopeless(rows[j], now), rows[j].deadline_at, j))


def _slack_weighted(power: float) -> Rule:
    """Service time times deadline slack to the `power`: short and urgent first; hopeless last."""

    def order(rows: Sequence[_Row], now: float) -> list[int]:
        def key(j: int) -> tuple[bool, float, int]:
            row = rows[j]
            slack = max(row.deadline_at - now - row.service_s, 0.5)
            return _hopeless(row, now), row.service_s * slack**power, j

        return sorted(range(len(rows)), key=key)

    return order


RULES: dict[str, Rule] = {
    "fifo": _fifo,
    "spt": _shortest_first,
    "edf": _earliest_deadline,
    "slack^0.5": _slack_weighted(0.5),
    "slack^1": _slack_weighted(1.0),
}


class QueuePlanner:
    """`queue-plan[:OPTIONS]`, OPTIONS `/`-separated `miss=S`, `hold=N`, `gangs=N`, `commit=RULE`,
    e.g. `queue-plan:miss=20/hold=12` (see the module docstring)."""

    name = "queue-plan"

    def __init__(self, options: str = "") -> None:
        settings = _parse_options(options)
        self.miss_penalty_s = float(settings.get("miss", MISS_PENALTY_S))
        self.gangs_up_to = int(settings.get("gangs", GANGS_UP_TO))
        self.commit_rule = str(settings["commit"]) if "commit" in settings else None
        self._hold_option = int(settings["hold"]) if "hold" in settings else None
        self.hold = UNBOUND_HOLD if self._hold_option is None else self._hold_option

    def use_scenario(self, scenario: Scenario) -> None:
        """Commit before the scenario's visible queue fills (unless `hold` was given)."""
        if self._hold_option is None and scenario.visible_queue is not None:
            self.hold = max(scenario.visible_queue - 1, 0)

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        rows = _rows(snap)
        if not rows:
            return None
        plan = self.best_plan(snap, rows)
        if len(snap.queue) > self.hold or not snap.has_future_events:
            order = plan.order if self.commit_rule is None else RULES[self.commit_rule](rows, snap.now)
            row = rows[order[0]]
            gang = min(row.smallest, key=lambda g: row.options[g].done_s)
            return Placement(row.index, gang, row.steps)
        return plan.first

    def best_plan(self, snap: ClusterSnapshot, rows: Sequence[_Row]) -> Plan:
        plans = [self._plan(snap, rows, name, RULES[name](rows, snap.now), any_gang=False) for name in RULES]
        if len(rows) <= self.gangs_up_to:
            plans.append(self._plan(snap, rows, "fifo+gangs", _fifo(rows, snap.now), any_gang=True))
        return min(plans, key=lambda p: p.cost)  # ties: the first rule listed

    def _plan(self, snap: ClusterSnapshot, rows: Sequence[_Row], rule: str, order: list[int], any_gang: bool) -> Plan:
        now = snap.now
        free = [max(n.free_at, now) for n in snap.nodes]  # when each node is free in this plan
        cost, first = 0.0, None
        for j in order:
            row = rows[j]
            best_done, best_gang, best_delay = float("inf"), row.smallest[0], 0.0
            for gang in row.options if any_gang else row.smallest:
                est = row.options[gang]
                delay = max(0.0, max(free[i] for i in gang) - est.start_s)  # behind planned tasks
                if est.done_s + delay < best_done:
                    best_done, best_gang, best_delay = est.done_s + delay, gang, delay
            if first is None and best_delay <= _EPS and all(snap.nodes[i].free_at <= now + _EPS for i in best_gang):
                first = Placement(row.index, best_gang, row.steps)
            finish = row.options[best_gang].finish_s + best_delay
            for i in best_gang:
                free[i] = finish
            response = best_done - row.task.arrival_s
            cost += response + (self.miss_penalty_s if best_done > row.deadline_at + _EPS else 0.0)
        return Plan(cost, rule, first, tuple(order))


def _rows(snap: ClusterSnapshot) -> list[_Row]:
    rows = []
    for index, task in enumerate(snap.queue):
        steps = min_acceptable_steps(snap.perf, task)
        options = {gang: estimate(snap, task, gang, steps) for _, gang in candidate_gangs(snap, task)}
        if not options:
            continue
        k = min(len(g) for g in options)
        smallest = tuple(g for g in options if len(g) == k)
        deadline_at = float("inf") if task.deadline_s is None else task.arrival_s + task.deadline_s
        rows.append(_Row(index, task, steps, options, smallest, min(options[g].service_s for g in smallest), deadline_at))
    return rows


def _parse_options(options: str) -> dict[str, float | str]:
    settings: dict[str, float | str] = {}
    for part in filter(None, (p.strip() for p in options.split("/"))):
        key, eq, value = part.partition("=")
        if not eq or key not in ("miss", "hold", "gangs", "commit"):
            raise ValueError(f"queue-plan: unknown option {part!r} (known: miss=S, hold=N, gangs=N, commit=RULE)")
        if key == "commit":
            if value not in RULES:
                raise ValueError(f"queue-plan: commit={value!r} is not a rule (known: {', '.join(RULES)})")
            settings[key] = value
            continue
        settings[key] = option_number("queue-plan", key, value, whole=key != "miss")
    return settings
