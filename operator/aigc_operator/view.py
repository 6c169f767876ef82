"""The scheduler's node view: Ready GPU nodes + worker reports + GPU metrics + shadow load.

Shadow load: work placed by the operator that the worker has not yet reported (unclaimed ranks,
or placed after the worker's last report) is added to the node's `free_at`, so a node that only
looks idle is not flooded between two reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from aigc_api.lease import WorkerStatus
from aigc_policy.snapshot import NodeState

from aigc_operator.gpu_metrics import MetricsReading
from aigc_operator.store import NodeInfo, PlacedLoad

MISSING_AGE_FACTOR = 10.0  # a node Prometheus has never reported is this many TTLs old


@dataclass(frozen=True, slots=True)
class MetricsHealth:
    """How usable the metrics are for one decision batch."""

    source_up: bool
    reason: str  # CamelCase; "MetricsFresh" when usable
    message: str
    node_ages: Mapping[str, float]  # node -> seconds (MISSING_AGE_FACTOR x TTL when unknown)
    stale_nodes: frozenset[str]


def metrics_health(
    nodes: Iterable[str], reading: MetricsReading | None, configured: bool, ttl_s: float, now_mono: float
) -> MetricsHealth:
    names = list(nodes)
    missing_age = MISSING_AGE_FACTOR * ttl_s
    if not configured:
        return MetricsHealth(
            False,
            "MetricsNotConfigured",
            "no Prometheus URL configured",
            dict.fromkeys(names, missing_age),
            frozenset(names),
        )
    if reading is None:
        return MetricsHealth(
            False,
            "MetricsPending",
            "no Prometheus sample yet",
            dict.fromkeys(names, missing_age),
            frozenset(names),
        )
    if not reading.up:
        return MetricsHealth(
            False,
            "PrometheusUnavailable",
            reading.error or "query failed",
            dict.fromkeys(names, missing_age),
            frozenset(names),
        )
    elapsed = max(0.0, now_mono - reading.taken_at)
    ages = {n: reading.nodes[n].age_s + elapsed if n in reading.nodes else missing_age for n in names}
    stale = frozenset(n for n, age in ages.items() if age > ttl_s)
    if names and len(stale) == len(names):
        return MetricsHealth(
            True, "MetricsStale", f"all {len(names)} nodes older than {ttl_s:.0f}s", ages, stale
        )
    return MetricsHealth(True, "MetricsFresh", "", ages, stale)


def build_node_states(
    nodes: Iterable[NodeInfo],
    workers: Mapping[str, WorkerStatus],
    loads: Iterable[PlacedLoad],
    health: MetricsHealth,
    now: datetime,
    require_worker: bool,
) -> list[NodeState]:
    now_s = now.timestamp()
    states: dict[str, NodeState] = {}
    reported_at: dict[str, float | None] = {}
    for info in nodes:
        worker = workers.get(info.name)
        alive = worker is not None and worker.alive(now)
        if require_worker and not alive:
            continue
        free_at = now_s
        resident = []
        if alive:
            assert worker is not None
            if worker.free_at is not None:
                free_at = max(now_s, worker.free_at.timestamp())
            resident = list(worker.resident)
        states[info.name] = NodeState(
            name=info.name,
            gpu_class=info.gpu_class,
            free_at=free_at,
            resident=resident,
            metrics_age_s=health.node_ages.get(info.name, 0.0),
        )
        reported_at[info.name] = worker.renew_time.timestamp() if alive and worker is not None else None
    for load in loads:
        for rank, name in enumerate(load.nodes):
            state = states.get(name)
            if state is None:
                continue
            state.inflight += 1
            report = reported_at[name]
            if report is None or rank not in load.claimed_ranks or load.decided_at > report:
                state.free_at += load.service_s
    return list(states.values())
