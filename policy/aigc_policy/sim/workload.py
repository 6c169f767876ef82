"""Workloads: streams of TaskSpec in arrival order, generated from a scenario or replayed.

Generation is lazy (one task at a time) so an episode of any length runs in flat memory, and
it uses `random.Random` because per-task scalar draws are several times faster than numpy's.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from aigc_policy.scenario import Scenario, TaskTemplate
from aigc_policy.snapshot import TaskSpec

REFERENCE_SEED = 233  # EAT re-seeded every reset with this (bug flag reseed_every_reset)
POSITION_SEED = 1  # LAD-TS drew per-position work once with this seed (bug flag position_tied_work)

Arrival = tuple[float, str | None, int]  # (time, origin node, position within its slot)


class Workload(Protocol):
    label: str

    def tasks(self, seed: int) -> Iterator[TaskSpec]: ...


class ScenarioWorkload:
    """The scenario's arrival process and task mix; the seed fixes the whole episode."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.label = f"{scenario.name} arrivals"

    def tasks(self, seed: int) -> Iterator[TaskSpec]:
        bugs = self.scenario.bugs
        rng = random.Random(REFERENCE_SEED if bugs.get("reseed_every_reset") else seed)
        params = dict(self.scenario.arrivals)
        if bugs.get("rate_override") is not None:
            params["rate"] = float(bugs["rate_override"])
        sampler = TaskSampler(self.scenario.tasks, rng, bool(bugs.get("position_tied_work")))
        times = arrival_times(params, rng, [n.name for n in self.scenario.nodes],
                              shuffle_origins=not bugs.get("fixed_origin_order"))
        if self.scenario.episode_tasks is not None:
            times = itertools.islice(times, self.scenario.episode_tasks)
        for i, (t, origin, position) in enumerate(times):
            yield sampler.sample(f"t{i}", t, origin, position)


def sample_future(scenario: Scenario, seed: int, start_s: float, horizon_s: float) -> list[TaskSpec]:
    """A guess at the arrivals in (start_s, start_s + horizon_s]: the scenario's process restarted
    at start_s without its initial queue. Exact in distribution for memoryless arrivals (poisson,
    bernoulli); for the others a plausible stand-in, which is all a planner needs."""
    skip = int(scenario.arrivals.get("initial", 0))
    future: list[TaskSpec] = []
    for i, task in enumerate(ScenarioWorkload(scenario).tasks(seed)):
        if i < skip:
            continue
        if task.arrival_s > horizon_s:
            break
        task.id = f"future-{i}"
        task.arrival_s += start_s
        future.append(task)
    return future


def arrival_times(params: Mapping[str, Any], rng: random.Random, nodes: list[str],
                  shuffle_origins: bool = True) -> Iterator[Arrival]:
    kind = params["kind"]
    if kind == "slotted":
        yield from _slotted(params, rng, nodes, shuffle_origins)
        return
    for _ in range(int(params.get("initial", 0))):
        yield 0.0, None, 0
    rate = float(params["rate"])
    gaps = {"poisson": _poisson, "bernoulli": _bernoulli, "bursty": _bursty, "diurnal": _diurnal}[kind]
    for t in gaps(params, rate, rng):
        yield t, None, 0


def _poisson(params: Mapping[str, Any], rate: float, rng: random.Random) -> Iterator[float]:
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        yield t


def _bernoulli(params: Mapping[str, Any], rate: float, rng: random.Random) -> Iterator[float]:
    """EAT's arrivals: each slot of `slot_s` seconds holds one task with probability rate*slot_s."""
    slot = float(params.get("slot_s", 0.1))
    p = min(1.0, rate * slot)
    t = 0.0
    while True:
        slots = 1 if p >= 1.0 else 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - p))
        t += slots * slot
        yield t


def _bursty(params: Mapping[str, Any], rate: float, rng: random.Random) -> Iterator[float]:
    """Two-state Markov-modulated Poisson process whose long-run mean rate is `rate`."""
    factor = float(params.get("burst_factor", 4.0))
    share = float(params.get("burst_fraction", 0.2))
    mean_burst = float(params.get("mean_burst_s", 30.0))
    calm_rate = rate / (1.0 - share + factor * share)
    mean_stay = {True: mean_burst, False: mean_burst * (1.0 - share) / share}
    bursting, t = False, 0.0
    state_end = rng.expovariate(1.0 / mean_stay[bursting])
    while True:
        t += rng.expovariate(calm_rate * (factor if bursting else 1.0))
        while t > state_end:  # memoryless: restart the clock at the switch
            t = state_end
            bursting = not bursting
            state_end = t + rng.expovariate(1.0 / mean_stay[bursting])
            t += rng.expovariate(calm_rate * (factor if bursting else 1.0))
        yield t


def _diurnal(params: Mapping[str, Any], rate: float, rng: random.Random) -> Iterator[float]:
    """rate * (1 + amplitude * sin(2 pi t / period)), sampled by thinning."""
    amplitude = float(params.get("amplitude", 0.8))
    period = float(params.get("period_s", 3600.0))
    peak = rate * (1.0 + amplitude)
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if rng.random() * peak <= rate * (1.0 + amplitude * math.sin(2.0 * math.pi * t / period)):
            yield t


def _slotted(params: Mapping[str, Any], rng: random.Random, nodes: list[str],
             shuffle_origins: bool) -> Iterator[Arrival]:
    """LAD-TS: at the start of each slot every node receives a uniform count of tasks."""
    slot = float(params.get("slot_s", 1.0))
    lo, hi = (int(v) for v in params.get("per_node", (1, 50)))
    if "rate" in params:  # --rate: mean tasks per node per slot, same uniform shape
        lo, hi = 1, max(1, round(2 * float(params["rate"]) - 1))
    for s in range(int(params["slots"])):
        batch = [(origin, n) for origin in nodes for n in range(rng.randint(lo, hi))]
        if shuffle_origins:
            rng.shuffle(batch)
        for origin, n in batch:
            yield s * slot, origin, n


class TaskSampler:
    def __init__(self, templates: tuple[TaskTemplate, ...], rng: random.Random, position_tied: bool) -> None:
        self.templates = templates
        self.rng = rng
        self.cumulative = list(itertools.accumulate(t.weight for t in templates))
        self.position_rng = random.Random(POSITION_SEED) if position_tied else None
        self.by_position: dict[tuple[int, int], tuple[float, int, float]] = {}

    def sample(self, task_id: str, arrival: float, origin: str | None, position: int) -> TaskSpec:
        rng = self.rng
        # random() < 1, so the draw lies below the last cumulative weight: the index is in range
        tpl = self.templates[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]
        width, height = tpl.sizes[rng.randrange(len(tpl.sizes))] if len(tpl.sizes) > 1 else tpl.sizes[0]
        work, demand, output = self._draw_work(tpl, rng) if self.position_rng is None else self._tied_work(tpl, position)
        lo, hi = (demand, demand) if demand is not None else tpl.steps
        deadline = self._uniform(tpl.deadline_s)
        quality = self._uniform(tpl.min_quality)
        gangs = (rng.choice(tpl.gang_draw),) if tpl.gang_draw else tpl.gang_sizes
        priority = tpl.priority[0] if len(tpl.priority) == 1 else rng.choice(tpl.priority)
        input_mbit = self._uniform(tpl.input_mbit) or 0.0
        # positional, in TaskSpec's field order: a keyword call costs 2.5x and this runs per task
        return TaskSpec(task_id, arrival, tpl.model, width, height, lo, hi, deadline, quality, gangs, priority,
                        work, origin, input_mbit, output)

    def _tied_work(self, tpl: TaskTemplate, position: int) -> tuple[float, int | None, float]:
        """LAD-TS bug flag: work scale, step demand and result size drawn once per queue position."""
        key = (self.templates.index(tpl), position)
        if key not in self.by_position:
            self.by_position[key] = self._draw_work(tpl, self.position_rng)
        return self.by_position[key]

    def _draw_work(self, tpl: TaskTemplate, rng: random.Random) -> tuple[float, int | None, float]:
        work = tpl.work_scale[0] if tpl.work_scale[0] == tpl.work_scale[1] else rng.uniform(*tpl.work_scale)
        demand = None if tpl.steps_draw is None else rng.randint(*tpl.steps_draw)
        output = tpl.output_mbit[0] if tpl.output_mbit[0] == tpl.output_mbit[1] else rng.uniform(*tpl.output_mbit)
        return work, demand, output

    def _uniform(self, bounds: tuple[float, float] | None) -> float | None:
        if bounds is None:
            return None
        lo, hi = bounds
        return lo if lo == hi else self.rng.uniform(lo, hi)
