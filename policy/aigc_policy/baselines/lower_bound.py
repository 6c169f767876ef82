"""The clairvoyant lower bound: every task served at once, warm, on its best gang.

Not a scheduler one can run: it ignores queueing and cold starts, so it is evaluated straight
from the workload. Each task gets its minimum acceptable steps and the fastest warm gang the
cluster has; its response is that service time plus transfers. A reference row, not a target.
"""

from __future__ import annotations

from dataclasses import dataclass

from aigc_policy.placement import earliest_finish, min_acceptable_steps
from aigc_policy.scenario import Scenario
from aigc_policy.sim.metrics import EpisodeMetrics
from aigc_policy.sim.simulator import slo_met
from aigc_policy.sim.workload import Workload
from aigc_policy.snapshot import ClusterSnapshot, NodeState, PerfModel, Resident


@dataclass(eq=False)
class _AlwaysWarm:
    """The scenario's tables with per-node reuse, so a node holding the model is warm."""

    perf: PerfModel
    reuse: str = "per-node"

    def __getattr__(self, name: str):  # delegate every lookup but `reuse`
        return getattr(self.perf, name)


class LowerBound:
    name = "lower-bound"
    reference_only = True

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> None:
        raise RuntimeError("lower-bound is a reference row computed by evaluate(), not a runnable policy")

    def evaluate(self, scenario: Scenario, workload: Workload, seed: int) -> EpisodeMetrics:
        every_model = [Resident(m, ()) for m in scenario.models]
        nodes = [NodeState(n.name, n.gpu_class, resident=list(every_model)) for n in scenario.nodes]
        snap = ClusterSnapshot(0.0, [], nodes, _AlwaysWarm(scenario.perf), scenario.gang_sizes, False)
        metrics = EpisodeMetrics(nodes=len(nodes))
        for task in workload.tasks(seed):
            snap.now = task.arrival_s
            steps = min_acceptable_steps(scenario.perf, task)
            best = earliest_finish(snap, task, steps)
            if best is None:
                metrics.rejected += 1
                continue
            gang, est = best
            response = est.done_s - task.arrival_s
            metrics.record(
                0.0,
                est.service_s,
                response,
                est.quality,
                False,
                slo_met(task, response, est.quality),
                est.service_s * len(gang),
                est.done_s,
            )
        return metrics
