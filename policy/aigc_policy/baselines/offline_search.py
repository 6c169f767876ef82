"""Clairvoyant offline search: the best schedule a search finds for an episode known in advance.

A reference row, like `lower-bound`, from the other side. `lower-bound` serves every task warm
and alone, so no schedule can beat it. This row is a schedule that was actually played through
the real Simulator by a scheduler that knew every arrival of the episode beforehand, so the
optimum (even with that foresight) is at most this. Between the two rows lies the optimum; a
policy close to this row has little left to win, and a target below it asks for more than
perfect foresight gave the search.

Schedules searched: a priority list over the episode's tasks, played in list order. The next
task of the list is placed on the gang that finishes it first (placement.earliest_finish, which
charges cold loads) at its fewest acceptable steps; while it has not arrived yet, the scheduler
waits for it (a task past the visible queue is skipped so that the queue can move). Simulated
annealing over lists (swap two tasks, or move one), starting from arrival order; each candidate
costs one simulated episode, `evals` per episode. A list schedule is one class among many, so
more `evals` or a richer class can only lower this row; the number is an upper bound on the
optimum, not the optimum.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from aigc_policy.baselines.common import option_number
from aigc_policy.baselines.rollout import MISS_PENALTY_S  # a missed SLO priced as the planner prices it
from aigc_policy.placement import Placement, earliest_finish, min_acceptable_steps
from aigc_policy.scenario import Scenario
from aigc_policy.sim.metrics import EpisodeMetrics
from aigc_policy.sim.simulator import Simulator
from aigc_policy.sim.workload import Workload
from aigc_policy.snapshot import ClusterSnapshot

EVALS = 5000
START_TEMPERATURE_S = 3.0  # in mean response seconds: worse lists are taken early on, not late


class OfflineSearch:
    """`offline-search[:OPTIONS]`, OPTIONS `/`-separated `evals=N` (simulated episodes per episode)
    and `seed=S` (the search's own random stream)."""

    name = "offline-search"
    reference_only = True

    def __init__(self, options: str = "") -> None:
        self.evals, self.seed = EVALS, 0
        for part in filter(None, (p.strip() for p in options.split("/"))):
            key, eq, value = part.partition("=")
            if not eq or key not in ("evals", "seed"):
                raise ValueError(f"{self.name}: unknown option {part!r} (known: evals=N, seed=N)")
            setattr(self, key, int(option_number(self.name, key, value, 1 if key == "evals" else 0, whole=True)))

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> None:
        raise RuntimeError("offline-search is a reference row computed by evaluate(), not a runnable policy")

    def evaluate(self, scenario: Scenario, workload: Workload, seed: int) -> EpisodeMetrics:
        """Metrics of the best list schedule found for episode `seed`."""
        arrival = arrival_times(workload, seed)
        order = search_order(scenario, workload, seed, arrival, self.evals, random.Random(self.seed ^ seed))
        return play(scenario, workload, seed, order, arrival)


def arrival_times(workload: Workload, seed: int) -> dict[str, float]:
    """Arrival time of each task of episode `seed`, in arrival order."""
    return {t.id: t.arrival_s for t in workload.tasks(seed)}


def search_order(
    scenario: Scenario, workload: Workload, seed: int, arrival: dict[str, float], evals: int, rng: random.Random
) -> list[str]:
    """The cheapest task list found by simulated annealing from arrival order (`evals` >= 1 plays)."""
    current = list(arrival)
    current_cost = cost(play(scenario, workload, seed, current, arrival))
    best, best_cost = current, current_cost
    for i in range(1, evals):
        candidate = _neighbour(current, rng)
        candidate_cost = cost(play(scenario, workload, seed, candidate, arrival))
        temperature = START_TEMPERATURE_S * (1.0 - i / evals) + 1e-6
        if candidate_cost <= current_cost or rng.random() < math.exp((current_cost - candidate_cost) / temperature):
            current, current_cost = candidate, candidate_cost
            if current_cost < best_cost:
                best, best_cost = current, current_cost
    return best


def _neighbour(order: list[str], rng: random.Random) -> list[str]:
    out = list(order)
    if len(out) < 2:
        return out
    i, j = rng.sample(range(len(out)), 2)
    if rng.random() < 0.5:
        out[i], out[j] = out[j], out[i]
    else:
        out.insert(j, out.pop(i))
    return out


def cost(metrics: EpisodeMetrics) -> float:
    """Mean response per task, plus the miss penalty per missed SLO; a rejected task counts as a miss."""
    attempted = metrics.completed + metrics.rejected
    if not attempted:
        return 0.0
    missed = attempted - metrics.slo_met
    return (metrics.response_sum + MISS_PENALTY_S * missed) / attempted


def play(
    scenario: Scenario, workload: Workload, seed: int, order: Sequence[str], arrival: dict[str, float]
) -> EpisodeMetrics:
    """One episode in which tasks are placed in `order` (see the module docstring); `arrival`:
    arrival_times of the episode, drawn once per search rather than once per play."""
    sim = Simulator(scenario, workload, seed)
    scheduler = _ListScheduler(order, arrival)
    while not sim.done:
        sim.step(scheduler.decide(sim.snapshot()))
    return sim.metrics


class _ListScheduler:
    def __init__(self, order: Sequence[str], arrival: dict[str, float]) -> None:
        self.order, self.arrival = order, arrival
        self.placed: set[str] = set()
        self.head = 0  # order[:head] are all placed

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        """A task back in the queue after a node failure first; else the first listed task that is
        visible, or None while the first one not yet placed has still to arrive (tasks that arrived
        but are not visible, past the visible queue or rejected, are skipped)."""
        queue = snap.queue
        pick = next((i for i, t in enumerate(queue) if t.id in self.placed), None)
        if pick is None:
            order, placed = self.order, self.placed
            while self.head < len(order) and order[self.head] in placed:
                self.head += 1
            visible = {t.id: i for i, t in enumerate(queue)}
            for task_id in order[self.head :]:
                if task_id in visible:
                    pick = visible[task_id]
                    break
                if task_id not in placed and self.arrival[task_id] > snap.now:
                    return None
        if pick is None:
            return None
        task = queue[pick]
        steps = min_acceptable_steps(snap.perf, task)
        best = earliest_finish(snap, task, steps)
        if best is None:  # no gang can run it now (nodes down): the simulator moves on or rejects
            return None
        self.placed.add(task.id)
        return Placement(pick, best[0], steps)
