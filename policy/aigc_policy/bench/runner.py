"""Run policies over episodes with common random numbers and aggregate their metrics.

Episode e of every policy uses the same derived seed for the workload, the simulator and the
policy's own randomness, so policies differ only by their decisions.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aigc_policy import policies
from aigc_policy.scenario import Scenario
from aigc_policy.sim.metrics import EpisodeMetrics, ResponseHistogram
from aigc_policy.sim.simulator import Simulator
from aigc_policy.sim.workload import Workload

# two-sided 95 % Student t quantiles by degrees of freedom; 1.96 beyond the table
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def episode_seeds(seed: int, episodes: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(episodes)]


def run_episode(scenario: Scenario, workload: Workload, policy_spec: str, seed: int) -> EpisodeMetrics:
    policy = policies.make(policy_spec, scenario)
    policy.reset(seed)
    if getattr(policy, "reference_only", False):
        return policy.evaluate(scenario, workload, seed)  # type: ignore[attr-defined]
    sim = Simulator(scenario, workload, seed)
    snap = sim.snapshot()
    decide, step = policy.decide, sim.step
    while not sim.done:
        step(decide(snap))
    return sim.metrics


@dataclass
class PolicyResult:
    episodes: list[EpisodeMetrics] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        eps = self.episodes
        completed = sum(e.completed for e in eps)
        attempted = completed + sum(e.rejected for e in eps)
        pooled = ResponseHistogram()
        for e in eps:
            pooled.merge(e.histogram)
        per_episode = [e.response_sum / e.completed for e in eps if e.completed]

        def mean(total: Callable[[EpisodeMetrics], float]) -> float:
            return sum(total(e) for e in eps) / completed if completed else math.nan

        summaries = [e.summary() for e in eps]
        return {
            "tasks": completed / len(eps),
            "rejected": sum(e.rejected for e in eps) / len(eps),
            "mean_response_s": mean(lambda e: e.response_sum),
            "p50_response_s": pooled.percentile(50),
            "p95_response_s": pooled.percentile(95),
            "p99_response_s": pooled.percentile(99),
            "mean_wait_s": mean(lambda e: e.wait_sum),
            "mean_service_s": mean(lambda e: e.service_sum),
            "slo_attainment": sum(e.slo_met for e in eps) / attempted if attempted else 1.0,
            "mean_quality": mean(lambda e: e.quality_sum),
            "cold_starts": sum(e.cold_starts for e in eps) / len(eps),
            "utilisation": statistics.fmean(s["utilisation"] for s in summaries),
            "ci95_mean_response_s": ci95(per_episode),
            "episodes": len(eps),
            "decisions": sum(e.decisions for e in eps) / len(eps),
            "forced_decisions": sum(e.forced for e in eps) / len(eps),
        }

    def histogram(self) -> ResponseHistogram:
        pooled = ResponseHistogram()
        for e in self.episodes:
            pooled.merge(e.histogram)
        return pooled


def ci95(values: list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean of per-episode values."""
    if len(values) < 2:
        return 0.0
    dof = len(values) - 1
    t = _T95.get(dof) or next((_T95[d] for d in sorted(_T95, reverse=True) if d <= dof), 1.96)
    return t * statistics.stdev(values) / math.sqrt(len(values))
