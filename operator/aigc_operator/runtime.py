"""Everything the operator process holds, and the background tasks it runs besides kopf's watches."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aigc_api import status as st
from aigc_api.catalog import ModelCatalog
from aigc_api.clock import parse_time, utcnow
from aigc_api.lease import WorkerStatus
from aigc_api.spec import task_id
from aigc_policy.snapshot import PerfModel

from aigc_operator.events import WARNING, EventRecorder
from aigc_operator.gpu_metrics import PrometheusSampler
from aigc_operator.kube import KubeApi
from aigc_operator.placer import Executors, Placer
from aigc_operator.policy_loader import PolicySet
from aigc_operator.settings import OperatorSettings
from aigc_operator.store import NodeStore, TaskStore
from aigc_operator.telemetry import Telemetry
from aigc_operator.view import metrics_health

log = logging.getLogger(__name__)

EVENT_POSTERS = 2


class Runtime:
    def __init__(
        self,
        settings: OperatorSettings,
        policies: PolicySet,
        perf: PerfModel,
        catalog: ModelCatalog | None,
        api: KubeApi,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.telemetry = Telemetry()
        self.tasks = TaskStore()
        self.nodes = NodeStore(settings.gpu_label_pair, settings.gpu_class_label)
        self.api = api
        self.executors = Executors(
            api=ThreadPoolExecutor(settings.api_concurrency, thread_name_prefix="aigc-api"),
            decide=ThreadPoolExecutor(1, thread_name_prefix="aigc-decide"),
        )
        # Events get their own threads so a burst of them never delays a placement write.
        self._event_pool = ThreadPoolExecutor(EVENT_POSTERS, thread_name_prefix="aigc-events")
        self.events = EventRecorder(self._post_event, self._event_pool, settings.normal_events_per_s)
        self.placer = Placer(
            settings,
            self.tasks,
            self.nodes,
            api,
            self.executors,
            self.telemetry,
            self.events,
            policies,
            perf,
            catalog,
        )
        self.sampler = (
            PrometheusSampler(settings.prometheus_url, settings.prometheus_timeout_s)
            if settings.prometheus_url
            else None
        )
        self._background: list[asyncio.Task[None]] = []

    def _post_event(self, *args: Any) -> None:
        if self.settings.events:
            self.api.post_event(*args)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.telemetry.serve(self.settings.metrics_port)
        self.telemetry.metrics_source_up.set(0)
        loops = [self.placer.run(), self._poll_workers()]
        loops += [self.events.run() for _ in range(EVENT_POSTERS)]
        if self.sampler is not None:
            loops.append(self._poll_metrics())
        self._background = [asyncio.create_task(coro) for coro in loops]
        if self.policies.error and self.settings.pod is not None:
            self.events.record(self.settings.pod, WARNING, "PolicyUnavailable", self.policies.error, utcnow())

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.executors.api.shutdown(wait=False, cancel_futures=True)
        self.executors.decide.shutdown(wait=False, cancel_futures=True)
        self._event_pool.shutdown(wait=False, cancel_futures=True)

    async def _poll_workers(self) -> None:
        loop = asyncio.get_running_loop()
        # Leases are taken at face value from the first read; after a failed read (API server
        # unreachable) they count as renewed no earlier than the next successful one.
        watching_since: datetime | None = datetime.min.replace(tzinfo=UTC)
        while True:
            try:
                workers = await loop.run_in_executor(
                    self.executors.api, self.api.worker_statuses, self.settings.namespace
                )
            except Exception as exc:
                log.warning("reading worker Leases failed: %s", exc)
                watching_since = None
            else:
                if watching_since is None:
                    log.warning("worker Leases readable again; every Lease gets a grace period from now")
                watching_since = watching_since or utcnow()
                alive_before = self._alive_workers(self.placer.workers)
                self.placer.workers = renewed_no_earlier_than(workers, watching_since)
                if self._alive_workers(workers) != alive_before:
                    self.tasks.clear_deferrals()
                    self.placer.notify()
            await asyncio.sleep(self.settings.lease_poll_s)

    def _alive_workers(self, workers: dict[str, WorkerStatus]) -> set[str]:
        ttl = timedelta(seconds=self.settings.heartbeat_ttl_s)
        now = utcnow()
        return {n for n, w in workers.items() if w.alive(now, ttl)}

    async def _poll_metrics(self) -> None:
        assert self.sampler is not None
        while True:
            reading = await asyncio.to_thread(self.sampler.sample)
            self.placer.reading = reading
            self.telemetry.metrics_source_up.set(1 if reading.up else 0)
            # The ages the next decision will use, missing nodes included (as MISSING_AGE_FACTOR x TTL).
            names = {n.name for n in self.nodes.usable()} | set(reading.nodes)
            health = metrics_health(names, reading, True, self.settings.metrics_ttl_s, reading.taken_at)
            self.telemetry.set_node_metrics_ages(health.node_ages)
            if not reading.up:
                log.warning("Prometheus sample failed: %s", reading.error)
            await asyncio.sleep(self.settings.metrics_poll_s)

    # ------------------------------------------------------------------ watch events

    def on_task_event(self, event: dict[str, Any]) -> None:
        body = event.get("object")
        if not body:
            return
        key = task_id(body)
        if event.get("type") == "DELETED":
            self.tasks.forget(key)
            self.placer.capacity_freed()
            return
        previous = self.tasks.get(key)
        if not self.tasks.observe(body):
            return
        if previous is not None and not st.is_terminal(previous) and st.is_terminal(body):
            self._observe_e2e(body)
            self.placer.capacity_freed()
        if not st.is_terminal(body):
            self.placer.notify()

    def _observe_e2e(self, body: dict[str, Any]) -> None:
        created = parse_time(body["metadata"].get("creationTimestamp"))
        finished = parse_time((st.status_of(body).get("timings") or {}).get("finishedTime"))
        if created and finished:
            self.telemetry.task_e2e.labels(
                model=body["spec"].get("model", ""), phase=st.phase_of(body)
            ).observe(max(0.0, (finished - created).total_seconds()))

    def on_node_event(self, event: dict[str, Any]) -> None:
        body = event.get("object")
        if not body:
            return
        name = body["metadata"]["name"]
        before = self.nodes.is_usable(name)
        self.nodes.observe(body, deleted=event.get("type") == "DELETED")
        if self.nodes.is_usable(name) != before:
            self.tasks.review_all_now()
            self.tasks.clear_deferrals()
            self.placer.notify()

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        reading = self.placer.reading
        return {
            "queueDepth": self.tasks.pending_count,
            "tasksKnown": len(self.tasks),
            "policy": self.policies.status(),
            "fallbackActive": self.placer.fallback_reason_now(),
            "metricsSource": {
                "configured": self.sampler is not None,
                "up": None if reading is None else reading.up,
                "ageSeconds": None if reading is None else round(time.monotonic() - reading.taken_at, 3),
                "error": None if reading is None else reading.error,
            },
            "workersAlive": len(self._alive_workers(self.placer.workers)),
            "eventsDropped": self.events.dropped,
            "eventsRateLimited": self.events.rate_limited,
        }


def renewed_no_earlier_than(workers: dict[str, WorkerStatus], since: datetime) -> dict[str, WorkerStatus]:
    """Leases as seen by an operator that has been able to read them only since `since`.

    A worker cannot renew its Lease while the API server is down, and the operator cannot tell a
    dead worker from an unreachable control plane during that time. As Kubernetes' node lifecycle
    controller does after a disruption, every worker gets one full Lease period from when the
    operator could read Leases again after a failed read before its claims expire.
    """
    return {
        node: status if status.renew_time >= since else replace(status, renew_time=since)
        for node, status in workers.items()
    }
