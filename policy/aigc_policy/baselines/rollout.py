"""Rollout planner: try each choice of the action layout, play the rest out with base heuristics
in what-if simulators, keep the choice whose continuations cost least.

This is policy rollout (one step of policy iteration on a model, Bertsekas): each base's own
next choice is among those it scores (when the action layout can express it), so on the futures
it plays out it starts from at least as good a plan as the best base, and it usually ends ahead
(a test checks it on a batch; not a guarantee, the bases are not sequentially consistent). It
sees what every policy sees, the snapshot;
when it knows the scenario (`use_scenario`, which the bench and the trainer call) it also
samples `samples` guesses of the next `horizon_s` seconds of arrivals from the scenario's
arrival process and task mix, never the real ones. It is far too slow for the operator's
per-decision budget (choices x bases x samples what-if episodes per decision) and exists to
teach the EAT network (`aigc-edge train --teacher rollout`), which then decides in a millisecond.

Choices are those the EAT action layout can express: a visible task on the gang that
`placement.complete_gang` builds from each anchor, at the task's fewest acceptable steps, or
wait while a busy node will free. Tasks that differ only in arrival time are one choice (the
earliest of them): swapping two such tasks leaves the summed completion time unchanged.
"""

from __future__ import annotations

import random

from aigc_policy import policies
from aigc_policy.baselines.common import option_number
from aigc_policy.placement import Placement, candidate_gangs, min_acceptable_steps
from aigc_policy.scenario import Scenario
from aigc_policy.scheduler import Scheduler
from aigc_policy.sim.simulator import Simulator, StepResult
from aigc_policy.sim.workload import sample_future
from aigc_policy.snapshot import ClusterSnapshot, TaskSpec

DEFAULT_BASES = ("warm-first", "eat-greedy")
HORIZON_S = 30.0
SAMPLES = 8
MISS_PENALTY_S = 30.0  # a missed SLO costs as much as this much extra response time


class Rollout:
    """`rollout[:OPTIONS]`, OPTIONS `/`-separated: BASE+BASE... and horizon=S, samples=M, miss=S,
    e.g. `rollout:eft+spt/horizon=20` or `rollout:samples=16` (`/`, because `--policies` is
    comma-separated; so a base cannot be an `eat:PATH` with a slash)."""

    name = "rollout"

    def __init__(self, options: str = "") -> None:
        bases, settings = _parse_options(options)
        self.bases: list[Scheduler] = [policies.make(b) for b in bases]
        self.horizon_s = settings.get("horizon", HORIZON_S)
        self.samples = int(settings.get("samples", SAMPLES))
        self.miss_penalty_s = settings.get("miss", MISS_PENALTY_S)
        self.scenario: Scenario | None = None
        self.rng = random.Random(0)

    def use_scenario(self, scenario: Scenario) -> None:
        """Plan with guesses of future arrivals drawn from this scenario's workload model."""
        self.scenario = scenario
        for base in self.bases:
            policies.bind(base, scenario)

    def reset(self, seed: int) -> None:
        self.rng = random.Random(seed ^ 0x9E3779B9)  # not the episode's own stream
        for base in self.bases:
            base.reset(seed)

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        choices = candidate_choices(snap)
        if len(choices) <= 1:
            return choices[0] if choices else None
        futures = self._futures(snap.now)
        best, best_cost = choices[0], float("inf")
        for choice in choices:
            cost = sum(min(self._cost(snap, choice, base, future) for base in self.bases) for future in futures)
            if cost < best_cost - 1e-9:
                best, best_cost = choice, cost
        return best

    def _futures(self, now: float) -> list[list[TaskSpec]]:
        if self.scenario is None or self.horizon_s <= 0:
            return [[]]
        draws = [self.rng.randrange(1 << 62) for _ in range(self.samples)]
        return [sample_future(self.scenario, d, now, self.horizon_s) for d in draws]

    def _cost(self, snap: ClusterSnapshot, first: Placement | None, base: Scheduler, future: list[TaskSpec]) -> float:
        """Summed response time, plus the miss penalty per missed SLO, of the visible and guessed
        tasks if `first` is taken and `base` goes on (every choice places the same tasks)."""
        sim = Simulator.what_if(snap, future)
        total = self._task_cost(sim.step(first))
        while not sim.done:
            total += self._task_cost(sim.step(base.decide(sim.snapshot())))
        return total

    def _task_cost(self, result: StepResult) -> float:
        return result.response_s + (0.0 if result.slo_met or not result.placed else self.miss_penalty_s)


def candidate_choices(snap: ClusterSnapshot) -> list[Placement | None]:
    """One placement per (task shape, gang) the action layout can express, then wait if a busy
    node will free (last, so a tie goes to placing now; waiting for an arrival is not planned)."""
    choices: list[Placement | None] = []
    seen: set[tuple] = set()
    for index, task in enumerate(snap.queue):
        shape = _shape(task)
        steps = min_acceptable_steps(snap.perf, task)
        for _, gang in candidate_gangs(snap, task):
            if (shape, gang) not in seen:
                seen.add((shape, gang))
                choices.append(Placement(index, gang, steps))
    if snap.has_future_events and any(n.up and n.free_at > snap.now for n in snap.nodes):
        choices.append(None)
    return choices


def _shape(task: TaskSpec) -> tuple:
    return (task.model, task.width, task.height, task.min_steps, task.max_steps, task.deadline_s,
            task.min_quality, task.gang_sizes, task.priority, task.work_scale, task.input_mbit, task.output_mbit)


def _parse_options(options: str) -> tuple[list[str], dict[str, float]]:
    bases: list[str] = list(DEFAULT_BASES)
    settings: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in options.split("/"))):
        key, eq, value = part.partition("=")
        if not eq:
            bases = [b for b in part.split("+") if b]
            continue
        if key not in ("horizon", "samples", "miss"):
            raise ValueError(f"rollout: unknown option {key!r} (known: horizon, samples, miss)")
        settings[key] = option_number("rollout", key, value, 1 if key == "samples" else 0, whole=key == "samples")
    if any(b.partition(":")[0] == Rollout.name for b in bases):
        raise ValueError("rollout cannot use itself as a base policy")
    return bases, settings
