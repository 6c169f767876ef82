"""Event-driven simulator of an edge GPU cluster serving text-to-image tasks."""

from aigc_policy.sim.metrics import EpisodeMetrics, ResponseHistogram
from aigc_policy.sim.simulator import InvalidPlacement, Simulator, StepResult
from aigc_policy.sim.trace import TraceError, TraceWorkload
from aigc_policy.sim.workload import ScenarioWorkload, Workload

__all__ = [
    "EpisodeMetrics",
    "InvalidPlacement",
    "ResponseHistogram",
    "ScenarioWorkload",
    "Simulator",
    "StepResult",
    "TraceError",
    "TraceWorkload",
    "Workload",
]
