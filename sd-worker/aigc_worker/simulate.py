"""`--simulate`: serve tasks by sleeping for the scenario's service time instead of generating.

For load tests (1,000 tasks on 16 fake nodes) the worker keeps its whole control path (claims,
heartbeats, Lease, warm-model LRU, metrics) and replaces only the GPU work with the latency
tables the simulator prices placements with, so a placement costs what the policy expected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from aigc_api import status as st
from aigc_api.catalog import ModelEntry
from aigc_policy.perf import TablePerfModel

from aigc_worker.cache import ModelCache
from aigc_worker.execution import UNSUPPORTED_GANG, Outcome, RankRun
from aigc_worker.metrics import WorkerMetrics
from aigc_worker.results import ResultStore, encode_png, result_key


class SimulatedExecutor:
    def __init__(
        self,
        perf: TablePerfModel,
        gpu_class: str,
        store: ResultStore,
        metrics: WorkerMetrics,
        time_scale: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.perf = perf
        self.gpu_class = gpu_class
        self.store = store
        self.metrics = metrics
        self.time_scale = time_scale  # 0.1: ten times faster than the scenario's clock
        self.sleep = sleep
        self._load_seconds = 0.0
        self.cache: ModelCache[str] = ModelCache(perf.class_vram_gb(gpu_class), self._pretend_load)

    def _pretend_load(self, entry: ModelEntry) -> str:
        self.sleep(self._load_seconds * self.time_scale)
        return entry.name

    def resident_models(self) -> list[str]:
        return self.cache.resident

    def run(self, run: RankRun) -> Outcome:
        request, k = run.request, run.gang_size
        start = time.perf_counter()
        if request.model not in self.perf.models:
            outcome = Outcome(st.UNKNOWN_MODEL, f"model {request.model!r} is not in the scenario")
        elif not self.perf.supports(self.gpu_class, request.model, request.width, request.height, k):
            outcome = Outcome(
                UNSUPPORTED_GANG,
                f"{self.gpu_class} cannot run {request.model} at {request.width}x{request.height} with k={k}",
                retryable=False,
            )
        else:
            outcome = self._serve(run)
        outcome.run_seconds = time.perf_counter() - start
        self.metrics.tasks.labels("succeeded" if outcome.succeeded else "failed").inc()
        if not outcome.succeeded:
            self.metrics.failures.labels(outcome.reason).inc()
        return outcome

    def _serve(self, run: RankRun) -> Outcome:
        request, k = run.request, run.gang_size
        self._load_seconds = self.perf.load_seconds(self.gpu_class, request.model, k)
        entry = ModelEntry(request.model, "simulated", "simulated", self.perf.model_vram_gb(request.model))
        self.metrics.busy.set(1)
        try:
            _, load_seconds = self.cache.get(entry)
            step_s = self.perf.step_seconds(self.gpu_class, request.model, request.width, request.height, k)
            self.sleep(step_s * run.steps * self.time_scale)
        finally:
            self.metrics.busy.set(0)
        self.metrics.step_seconds.labels(request.model, f"{request.width}x{request.height}", str(k)).observe(
            step_s
        )
        outcome = Outcome(load_seconds=load_seconds, step_seconds=step_s)
        if run.rank == 0:
            metadata = {
                "simulated": "true",
                "model": request.model,
                "steps": run.steps,
                "seed": run.seed,
                "placement": {"attempt": run.attempt, "nodes": list(run.nodes), "policy": run.policy},
            }
            png = encode_png(np.full((8, 8, 3), 0.5), metadata)
            outcome.result = self.store.put(result_key(run.namespace, run.name, run.attempt), png)
        return outcome
