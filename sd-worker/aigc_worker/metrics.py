"""The worker's Prometheus metrics (own registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOAD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_length = Gauge("aigc_worker_queue_length", "Ranks claimed and not finished", registry=r)
        self.busy = Gauge("aigc_worker_busy", "1 while generating or loading", registry=r)
        self.resident = Gauge("aigc_worker_model_resident", "1 if the model is loaded", ["model"], registry=r)
        self.step_seconds = Histogram(
            "aigc_worker_step_seconds",
            "Seconds per denoising step",
            ["model", "resolution", "gang_size"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.load_seconds = Histogram(
            "aigc_worker_model_load_seconds", "Model load time", ["model"], buckets=LOAD_BUCKETS, registry=r
        )
        self.evictions = Counter("aigc_worker_model_evictions_total", "Models evicted", ["model"], registry=r)
        self.tasks = Counter("aigc_worker_tasks_total", "Ranks run to an end", ["outcome"], registry=r)
        self.failures = Counter(
            "aigc_worker_failures_total", "Failed ranks by reason", ["reason"], registry=r
        )

    def set_resident(self, models: list[str], known: list[str]) -> None:
        for name in known:
            self.resident.labels(name).set(1 if name in models else 0)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)
