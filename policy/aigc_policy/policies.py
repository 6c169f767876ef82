"""Scheduler registry: `--policies` names -> factories, loaded lazily.

An entry is "module:attribute"; the attribute is called with the text after the first colon
of the policy spec (`eat:PATH` passes "PATH"), or with no argument when there is none. Learned
policies add their entries here (or call `register`) without importing torch at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from aigc_policy.scenario import Scenario
from aigc_policy.scheduler import Scheduler

Factory = Callable[..., Scheduler]

BUILTIN: dict[str, str] = {
    "random": "aigc_policy.baselines.simple:RandomScheduler",
    "round-robin": "aigc_policy.baselines.simple:RoundRobin",
    "least-loaded": "aigc_policy.baselines.simple:LeastLoaded",
    "capacity-random": "aigc_policy.baselines.simple:CapacityRandom",
    "eft": "aigc_policy.baselines.greedy:EarliestFinish",
    "opt-ts": "aigc_policy.baselines.greedy:OptTs",
    "spt": "aigc_policy.baselines.greedy:ShortestFirst",
    "warm-first": "aigc_policy.baselines.greedy:WarmFirst",
    "eat-greedy": "aigc_policy.baselines.eat_greedy:EatGreedy",
    "eat-greedy-ref": "aigc_policy.baselines.eat_greedy:EatGreedyReference",
    "lower-bound": "aigc_policy.baselines.lower_bound:LowerBound",
    "offline-search": "aigc_policy.baselines.offline_search:OfflineSearch",  # offline-search:evals=N; a reference row
    "queue-plan": "aigc_policy.baselines.queue_planner:QueuePlanner",
    "rollout": "aigc_policy.baselines.rollout:Rollout",  # rollout:BASE+BASE; a slow teacher, not for the operator
    "eat": "aigc_policy.onnx_policy:eat",  # eat:PATH for another ONNX file; default: the shipped one
    "dsac": "aigc_policy.onnx_policy:dsac",
    "sac": "aigc_policy.onnx_policy:sac",
    "ladts": "aigc_policy.rl.ts_onnx:ladts",  # ladts:PATH for another ONNX file; default: the shipped one
    "d2sac": "aigc_policy.rl.ts_onnx:d2sac",
    "sac-ts": "aigc_policy.rl.ts_onnx:sac_ts",
    "dqn": "aigc_policy.rl.ts_onnx:dqn",
}
_registered: dict[str, Factory] = {}


class UnknownPolicy(ValueError):
    """A policy name nobody registered."""


def register(name: str, factory: Factory | str) -> None:
    """Add a policy; `factory` is a callable or a lazy "module:attribute" string."""
    if isinstance(factory, str):
        BUILTIN[name] = factory
    else:
        _registered[name] = factory


def names() -> list[str]:
    return sorted({*BUILTIN, *_registered})


def make(spec: str, scenario: Scenario | None = None) -> Scheduler:
    """Build a scheduler from "name" or "name:argument", bound to `scenario` if given (see bind)."""
    name, sep, arg = spec.strip().partition(":")
    factory = _registered.get(name)
    if factory is None and name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        factory = getattr(importlib.import_module(module), attr)
    if factory is None:
        raise UnknownPolicy(f"unknown policy {name!r} (known: {', '.join(names())})")
    policy = factory(arg) if sep else factory()
    if scenario is not None:
        bind(policy, scenario)
    return policy


def bind(policy: Scheduler, scenario: Scenario) -> None:
    """Hand `scenario` to a policy that uses it (it has `use_scenario`): a planner modelling the
    workload, or a shipped network trained on that scenario; the others ignore it."""
    use = getattr(policy, "use_scenario", None)
    if use is not None:
        use(scenario)
