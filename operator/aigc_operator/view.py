"""The scheduler's node view: Ready GPU nodes + worker reports + GPU metrics + shadow load.

Shadow load: work placed by the operator that the worker has not yet reported (unclaimed ranks,
or placed after the worker's last report; all placed work on a node without a worker report) is
queued onto the node's `free_at` from each decision time, and its model counts as resident there,
so a node that only looks idle is not flooded between two reports, and an estimate that was never
confirmed expires on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aigc_api.lease import WorkerStatus
from aigc_policy.snapshot import NodeState, Resident

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
    lease_ttl: timedelta | None = None,
) -> list[NodeState]:
    """`lease_ttl` caps each worker Lease's duration, as for the claims on it (aigc_api.status)."""
    now_s = now.timestamp()
    states: dict[str, NodeState] = {}
    reported: dict[str, tuple[float, float] | None] = {}  # node -> (report time, reported free_at)
    for info in nodes:
        worker = workers.get(info.name)
        alive = worker is not None and worker.alive(now, lease_ttl)
        if require_worker and not alive:
            continue
        states[info.name] = NodeState(
            name=info.name,
            gpu_class=info.gpu_class,
            free_at=now_s,
            resident=list(worker.resident) if alive and worker is not None else [],
            metrics_age_s=health.node_ages.get(info.name, 0.0),
        )
        if alive and worker is not None:
            free_at = worker.free_at.timestamp() if worker.free_at is not None else 0.0
            reported[info.name] = (worker.renew_time.timestamp(), free_at)
        else:
            reported[info.name] = None
    shadow: dict[str, list[tuple[float, float]]] = {name: [] for name in states}
    # Residency in LRU order as an ordered set: the worker loads the model of each unreported task.
    resident: dict[str, dict[Resident, None]] = {n: dict.fromkeys(s.resident) for n, s in states.items()}
    for load in loads:
        for rank, name in enumerate(load.nodes):
            state = states.get(name)
            if state is None:
                continue
            state.inflight += 1
            report = reported[name]
            if report is None or rank not in load.claimed_ranks or load.decided_at > report[0]:
                shadow[name].append((load.decided_at, load.service_s))
                order = resident[name]
                order.pop(load.resident, None)
                order[load.resident] = None
    for name, state in states.items():
        report = reported[name]
        state.free_at = max(now_s, _drain_time(report[1] if report else 0.0, shadow[name]))
        state.resident = list(resident[name])
    return list(states.values())


def _drain_time(start: float, shadow: list[tuple[float, float]]) -> float:
    """When a node that is busy until `start` finishes the unreported work placed on it, assuming
    each task starts no earlier than its decision: the shadow decays on its own estimate."""
    t = start
    for decided_at, service_s in sorted(shadow):
        t = max(t, decided_at) + service_s
    return t
