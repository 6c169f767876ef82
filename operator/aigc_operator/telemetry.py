"""The operator's own Prometheus metrics (kopf has no metrics endpoint: kopf#990)."""

from __future__ import annotations

from collections.abc import Mapping

import aigc_policy
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
E2E_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.scheduling_duration = Histogram(
            "aigc_scheduler_scheduling_duration_seconds",
            "First sight of a pending task (watch event) to its first placement written.",
            ["result"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.schedule_attempts = Counter(
            "aigc_scheduler_schedule_attempts_total",
            "Placement attempts by result (scheduled, unschedulable, conflict, error, failed).",
            ["result"],
            registry=r,
        )
        self.pending_tasks = Gauge(
            "aigc_scheduler_pending_tasks", "Tasks waiting for a placement.", registry=r
        )
        self.policy_inference = Histogram(
            "aigc_scheduler_policy_inference_duration_seconds",
            "One policy decision (feature encoding and inference).",
            ["policy"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.fallback_decisions = Counter(
            "aigc_scheduler_fallback_decisions_total",
            "Placements made by the deterministic fallback policy.",
            ["reason"],
            registry=r,
        )
        self.policy_failures = Counter(
            "aigc_scheduler_policy_failures_total",
            "Batches the configured policy raised on; the fallback placed them.",
            ["policy"],
            registry=r,
        )
        self.metrics_source_up = Gauge(
            "aigc_scheduler_metrics_source_up", "1 if the last Prometheus sample succeeded.", registry=r
        )
        self.node_metrics_age = Gauge(
            "aigc_scheduler_node_metrics_age_seconds",
            "Age of the newest GPU sample per node.",
            ["node"],
            registry=r,
        )
        self._aged_nodes: set[str] = set()
        self.task_e2e = Histogram(
            "aigc_task_e2e_duration_seconds",
            "Task creation to Succeeded/Failed.",
            ["model", "phase"],
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge("aigc_scheduler_build_info", "Build information.", ["version"], registry=r)
        self.build_info.labels(version=aigc_policy.__version__).set(1)

    def set_node_metrics_ages(self, ages: Mapping[str, float]) -> None:
        """One series per node the next decision may use; a node that left drops its series
        rather than keep reporting the last age it had."""
        for node in self._aged_nodes - ages.keys():
            self.node_metrics_age.remove(node)
        for node, age in ages.items():
            self.node_metrics_age.labels(node=node).set(age)
        self._aged_nodes = set(ages)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
