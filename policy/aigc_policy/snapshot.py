"""The cluster snapshot: what a scheduler sees at one decision.

This is the single contract between the worlds that produce a cluster view (the simulator,
the operator reading the API server and Prometheus) and everything that consumes one (the
feature encoder, heuristic baselines, learned policies). numpy-free on purpose: it is plain
data so the operator can build it without the training stack.

Objects are referenced, not copied: the simulator hands out its live task and node objects
for speed, so consumers must treat a snapshot as read-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

GANG_SIZES: tuple[int, ...] = (1, 2, 4, 8)


@dataclass(slots=True)
class TaskSpec:
    """One text-to-image request as the scheduler sees it (trace line or AIGCTask spec)."""

    id: str
    arrival_s: float
    model: str
    width: int = 512
    height: int = 512
    min_steps: int = 30
    max_steps: int = 30
    deadline_s: float | None = None  # relative to arrival
    min_quality: float | None = None  # in [0, 1]
    gang_sizes: tuple[int, ...] | None = None  # None: any the cluster allows
    priority: int = 0
    # Task-level work amount: multiplies the model's per-step time (LAD-TS Gcycles per step).
    work_scale: float = 1.0
    # Where the request enters the cluster and how much it ships; prices the transfer term.
    origin: str | None = None
    input_mbit: float = 0.0
    output_mbit: float = 0.0

    @property
    def steps_fixed(self) -> bool:
        return self.min_steps == self.max_steps


@dataclass(frozen=True, slots=True)
class Resident:
    """A model loaded on a node; `group` names the nodes of the k-way pipeline it belongs to."""

    model: str
    group: tuple[str, ...]


@dataclass(slots=True)
class NodeState:
    """One GPU node. `free_at` is the absolute time its reservation queue drains."""

    name: str
    gpu_class: str
    up: bool = True
    free_at: float = 0.0
    resident: list[Resident] = field(default_factory=list)  # LRU order, most recent last
    metrics_age_s: float = 0.0  # how old the node's load information is (0 in the simulator)
    inflight: int = 0  # tasks reserved on it and not finished


class PerfModel(Protocol):
    """Latency, memory and quality model of a cluster (a scenario's tables implement it)."""

    reuse: str  # "per-node": a model resident on every member is warm; "exact-group": EAT's rule

    def step_seconds(self, gpu_class: str, model: str, width: int, height: int, k: int) -> float: ...

    def load_seconds(self, gpu_class: str, model: str, k: int) -> float: ...

    def quality(self, model: str, steps: int) -> float: ...

    def model_vram_gb(self, model: str) -> float: ...

    def class_vram_gb(self, gpu_class: str) -> float: ...

    def supports(self, gpu_class: str, model: str, width: int, height: int, k: int) -> bool: ...

    def link_mbps(self, gpu_class: str) -> float | None: ...  # None: transfers are free


@dataclass(slots=True)
class ClusterSnapshot:
    """The queue (FIFO) and the nodes at time `now`, plus the model that prices placements."""

    now: float
    queue: Sequence[TaskSpec]
    nodes: Sequence[NodeState]
    perf: PerfModel
    gang_sizes: tuple[int, ...] = GANG_SIZES
    has_future_events: bool = True  # False: waiting would stall, a policy must place if it can
    # placement.eligible_nodes' memo of class support by (model, width, height, k): node classes
    # never change during a snapshot's life, only `up` does, and that is checked on every call.
    capable: dict[tuple[str, int, int, int], tuple[int, ...]] = field(default_factory=dict, repr=False)
