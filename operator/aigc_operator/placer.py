"""The single placement loop: review placed tasks, then drain the pending queue in batches.

Every write is a resourceVersion-guarded status patch built by aigc_api.status, so a task is
placed at most once per attempt: on 409 the task is re-read and decided again from the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aigc_api import conditions as cond
from aigc_api import status as st
from aigc_api.api_errors import is_conflict, is_not_found
from aigc_api.catalog import ModelCatalog
from aigc_api.clock import utcnow
from aigc_api.lease import WorkerStatus
from aigc_api.spec import SpecError, parse_task_spec
from aigc_policy.snapshot import NodeState, PerfModel, TaskSpec

from aigc_operator import lifecycle
from aigc_operator.decide import BatchOutcome, Decision, decide_batch, never_runnable
from aigc_operator.events import NORMAL, WARNING, EventRecorder
from aigc_operator.gpu_metrics import MetricsReading
from aigc_operator.kube import KubeApi
from aigc_operator.policy_loader import LoadedPolicy, PolicySet
from aigc_operator.settings import OperatorSettings
from aigc_operator.store import NodeInfo, NodeStore, PlacedLoad, TaskStore
from aigc_operator.telemetry import Telemetry
from aigc_operator.view import MetricsHealth, build_node_states, metrics_health

log = logging.getLogger(__name__)

REASON_UNSCHEDULABLE = st.UNSCHEDULABLE  # Pending + Scheduled=False (now), or Failed (never)
REASON_NO_NODES = "NoUsableNodes"
REASON_POLICY_UNAVAILABLE = "PolicyUnavailable"
REASON_POLICY_FAILED = "PolicyFailed"  # the primary raised on this batch (e.g. a cluster size it cannot encode)
UNSCHEDULABLE_RETRY_S = 10.0  # without a node or worker change, re-check unplaceable tasks this often
REVIEW_INTERVAL_S = 0.25  # reviews scan every placed task: at most this often, however busy the watch
# The node view folds in every placed, unfinished task: rebuild it at most this often. In between,
# a batch starts from the view the previous batch left (its own placements already absorbed), so
# a deep backlog does not make every small batch cost O(backlog).
VIEW_REFRESH_S = 1.0
VIEW_FREED_S = 0.1  # after a task finishes, rebuild within this (debounces a stream of completions)


@dataclass(slots=True)
class _NodeView:
    expires_at: float  # monotonic s
    inputs: tuple[object, ...]  # what it was built from besides the tasks
    nodes: list[NodeState]


@dataclass(frozen=True, slots=True)
class Executors:
    api: Executor  # blocking API calls, `api_concurrency` threads
    decide: Executor  # one thread: policies need not be thread-safe


class Placer:
    def __init__(
        self,
        settings: OperatorSettings,
        tasks: TaskStore,
        nodes: NodeStore,
        api: KubeApi,
        executors: Executors,
        telemetry: Telemetry,
        events: EventRecorder,
        policies: PolicySet,
        perf: PerfModel,
        catalog: ModelCatalog | None,
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.nodes = nodes
        self.api = api
        self.executors = executors
        self.telemetry = telemetry
        self.events = events
        self.policies = policies
        self.perf = perf
        self.catalog = catalog
        self.workers: dict[str, WorkerStatus] = {}
        self._dead_holders: dict[str, tuple[str, datetime]] = {}  # node -> (holder, when its claim expired)
        self.reading: MetricsReading | None = None
        self._wake = asyncio.Event()
        self._wake_at: float | None = None  # epoch s when a waiting policy may place again
        self._write_slots = asyncio.Semaphore(settings.api_concurrency)
        self._writes: set[asyncio.Task[None]] = set()  # in flight; the loop does not wait for them
        # Decide at most this far ahead of the writes, so decisions use a fresh view.
        self._max_writes = 2 * max(settings.batch_size, settings.api_concurrency)
        self._last_review = 0.0
        self._review_skipped = False
        self._view: _NodeView | None = None
        self._primary_failure: str | None = None  # why the primary's last batch raised; None once one succeeds

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            timeout = self.settings.tick_s
            if self._wake_at is not None:
                timeout = min(timeout, max(0.01, self._wake_at - time.time()))
            if self._review_skipped:
                timeout = min(timeout, REVIEW_INTERVAL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake_at = None
            self._wake.clear()
            try:
                await self.review()
                while await self.place_batch():
                    pass
            except Exception:
                log.exception("placement loop iteration failed; retrying next tick")
            self.telemetry.pending_tasks.set(self.tasks.pending_count)

    # ------------------------------------------------------------------ review

    async def review(self) -> None:
        now = utcnow()
        ttl = timedelta(seconds=self.settings.heartbeat_ttl_s)
        timeout = timedelta(seconds=self.settings.claim_timeout_s)
        failures = []
        workers = self.workers
        for key, body in self.tasks.due_for_review(now.timestamp()):
            verdict = lifecycle.review(
                body, now, self.nodes.is_usable, ttl, timeout, self.settings.max_attempts, workers.get
            )
            if verdict.reason == st.CLAIM_EXPIRED:
                self._note_dead_holders(body, now, ttl, timeout)
            if verdict.action == lifecycle.KEEP:
                next_check = verdict.next_check.timestamp() if verdict.next_check else float("inf")
                self.tasks.set_review(key, next_check)
            elif verdict.action == lifecycle.REPLACE:
                self.tasks.request_replacement(key, f"{verdict.reason}: {verdict.message}")
                self.events.record(body, WARNING, verdict.reason, f"re-placing: {verdict.message}", now)
            else:
                failures.append(self._fail(key, body, verdict.reason, verdict.message))
        if failures:
            await asyncio.gather(*failures)

    def _note_dead_holders(
        self, body: dict[str, Any], now: datetime, ttl: timedelta, timeout: timedelta
    ) -> None:
        """Remember who held the expired claims where, so their tasks never go back to a node that
        only looks alive (finding 3): until its Lease names another holder or is renewed later."""
        claims = st.current_claims(body)
        for rank in st.expired_ranks(body, now, ttl, timeout, self.workers.get):
            claim = claims.get(rank)
            if claim is not None:
                self._dead_holders[claim.node] = (claim.holder, now)

    def _suspect(self, node: str, now: datetime, ttl: timedelta) -> bool:
        """A node whose worker let a claim expire and has not shown a sign of life since."""
        dead = self._dead_holders.get(node)
        if dead is None:
            return False
        holder, since = dead
        lease = self.workers.get(node)
        revived = (
            lease is not None
            and lease.alive(now, ttl)
            and (lease.holder != holder or lease.renew_time > since)
        )
        if revived or now > since + ttl:
            del self._dead_holders[node]
            return False
        return True

    # ------------------------------------------------------------------ placement

    async def place_batch(self) -> bool:
        """One batch; True if it placed something and more tasks are pending."""
        if len(self._writes) >= self._max_writes:
            return False  # a finished write wakes the loop
        now = utcnow()
        keys = self.tasks.take_pending(self.settings.batch_size, now.timestamp())
        if not keys:
            return False
        specs: list[TaskSpec] = []
        key_of: dict[str, str] = {}
        body_of: dict[str, dict[str, Any]] = {}
        for key in keys:
            body = self.tasks.get(key)
            if body is None or st.is_terminal(body):
                self.tasks.done(key, placed=True)
                continue
            try:
                spec = parse_task_spec(body)
            except SpecError as exc:
                self._spawn(self._fail(key, body, st.INVALID_SPEC, str(exc)))
                continue
            if self.catalog is not None and spec.model not in self.catalog:
                known = ", ".join(self.catalog.names)
                reason = f"model {spec.model!r} is not in the catalog ({known})"
                self._spawn(self._fail(key, body, st.UNKNOWN_MODEL, reason))
                continue
            never = never_runnable(self.perf, spec)
            if never is not None:
                self._spawn(self._fail(key, body, st.UNSCHEDULABLE, never))
                continue
            specs.append(spec)
            key_of[spec.id] = key
            body_of[key] = body
        if not specs:
            return self.tasks.has_takeable(now.timestamp())

        try:
            outcome, policy, fallback_reason, health = await self._decide(specs, now)
        except BaseException:
            for key in key_of.values():
                self.tasks.done(key, placed=False)  # taken work goes back to the queue, never lost
            raise
        for decision in outcome.decisions:
            key = key_of[decision.task.id]
            load = PlacedLoad(
                decision.nodes, decision.task.model, decision.service_s, now.timestamp(), frozenset()
            )
            self.tasks.hold(key, load)
            self._spawn(self._write_placement(key, body_of[key], decision, policy, fallback_reason, health))
        reason, message = (
            (REASON_UNSCHEDULABLE, "no Ready GPU node with a live worker can run this model/size/gang now")
            if outcome.nodes
            else (REASON_NO_NODES, "no Ready GPU node with a live worker")
        )
        for task in outcome.unplaceable:
            self._spawn(self._write_unschedulable(key_of[task.id], reason, message))
        for task in outcome.waiting:
            self.tasks.done(key_of[task.id], placed=False)
        if outcome.waiting:
            # The policy waits for a node to free up: look again when the first one does.
            busy_until = [n.free_at for n in outcome.nodes if n.free_at > now.timestamp()]
            self._wake_at = min(busy_until, default=None)
        progressed = bool(outcome.decisions or outcome.unplaceable)
        return progressed and self.tasks.has_takeable(utcnow().timestamp())

    async def _decide(
        self, specs: list[TaskSpec], now: datetime
    ) -> tuple[BatchOutcome, LoadedPolicy, str | None, MetricsHealth]:
        """Decide a batch with the policy the metrics allow; if the primary raises, with the fallback."""
        ttl = timedelta(seconds=self.settings.heartbeat_ttl_s)
        usable = [n for n in self.nodes.usable() if not self._suspect(n.name, now, ttl)]
        health = self.metrics_health(n.name for n in usable)
        policy, fallback_reason = self._choose_policy(health)
        node_states = self._node_view(usable, health, now, ttl)
        try:
            outcome = await self._run_policy(policy, specs, node_states, now)
            if policy is not self.policies.fallback:
                self._primary_failure = None
        except Exception as exc:
            if policy is self.policies.fallback:
                raise
            self._note_primary_failure(policy, exc)
            self._view = None  # the failed batch may have advanced the cached view
            node_states = self._node_view(usable, health, now, ttl)
            policy, fallback_reason = self.policies.fallback, REASON_POLICY_FAILED
            outcome = await self._run_policy(policy, specs, node_states, now)
        return outcome, policy, fallback_reason, health

    async def _run_policy(
        self, policy: LoadedPolicy, specs: list[TaskSpec], node_states: list[NodeState], now: datetime
    ) -> BatchOutcome:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executors.decide, decide_batch, policy.scheduler, specs, node_states, self.perf, now.timestamp()
        )

    def _note_primary_failure(self, policy: LoadedPolicy, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"[:300]
        self.telemetry.policy_failures.labels(policy=policy.name).inc()
        if message != self._primary_failure:  # a cluster the policy cannot encode fails every batch: say it once
            log.warning("policy %s failed on a batch (%s); the fallback places it", policy.name, message)
        self._primary_failure = message

    def _node_view(
        self, usable: list[NodeInfo], health: MetricsHealth, now: datetime, ttl: timedelta
    ) -> list[NodeState]:
        inputs = (tuple(usable), id(self.workers), health.source_up, health.stale_nodes)
        view = self._view
        if view is not None and view.inputs == inputs and time.monotonic() < view.expires_at:
            for state in view.nodes:
                state.metrics_age_s = health.node_ages.get(state.name, 0.0)
            return view.nodes
        nodes = build_node_states(
            usable,
            self.workers,
            self.tasks.placed_loads(),
            health,
            now,
            self.settings.require_worker,
            lease_ttl=ttl,
        )
        self._view = _NodeView(time.monotonic() + VIEW_REFRESH_S, inputs, nodes)
        return nodes

    def capacity_freed(self) -> None:
        """A placed task finished or went away: its nodes may be idle sooner than the view says."""
        if self._view is not None:
            self._view.expires_at = min(self._view.expires_at, time.monotonic() + VIEW_FREED_S)

    def metrics_health(self, node_names: Iterable[str]) -> MetricsHealth:
        configured = self.settings.prometheus_url is not None
        return metrics_health(
            node_names, self.reading, configured, self.settings.metrics_ttl_s, time.monotonic()
        )

    def fallback_reason_now(self) -> str | None:
        """Why the next batch would use the fallback policy (None: the configured policy)."""
        reason = self._choose_policy(self.metrics_health(n.name for n in self.nodes.usable()))[1]
        if reason is None and self._primary_failure is not None:
            return REASON_POLICY_FAILED
        return reason

    def _choose_policy(self, health: MetricsHealth) -> tuple[LoadedPolicy, str | None]:
        if self.policies.primary is None:
            return self.policies.fallback, REASON_POLICY_UNAVAILABLE
        if not health.source_up or health.reason == "MetricsStale":
            return self.policies.fallback, health.reason
        return self.policies.primary, None

    async def _call(self, fn: Any, *args: Any) -> Any:
        async with self._write_slots:
            return await asyncio.get_running_loop().run_in_executor(self.executors.api, fn, *args)

    def _spawn(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._write_done)

    def _write_done(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if self.tasks.pending_count:
            self.notify()
        if not task.cancelled() and task.exception() is not None:
            log.error("status write failed unexpectedly", exc_info=task.exception())

    async def drain_writes(self) -> None:
        """Wait for the writes in flight (tests; a stopping operator just abandons them)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def _write_placement(
        self,
        key: str,
        body: dict[str, Any],
        decision: Decision,
        policy: LoadedPolicy,
        fallback_reason: str | None,
        health: MetricsHealth,
    ) -> None:
        """Write the decision made on `body` (that version: the patch carries its resourceVersion)."""
        try:
            await self._write_placement_guarded(key, body, decision, policy, fallback_reason, health)
        finally:
            self.tasks.unhold(key)

    async def _write_placement_guarded(
        self,
        key: str,
        body: dict[str, Any],
        decision: Decision,
        policy: LoadedPolicy,
        fallback_reason: str | None,
        health: MetricsHealth,
    ) -> None:
        now = utcnow()
        attempt = int(st.status_of(body).get("attempts") or 0) + 1
        record = st.PlacementRecord(
            attempt=attempt,
            nodes=decision.nodes,
            steps=decision.steps,
            policy=policy.name,
            policy_version=policy.version,
            decision_time=now,
            inputs_age_millis=round(decision.inputs_age_s * 1000),
            estimated_service_millis=round(decision.service_s * 1000),
            fallback_reason=fallback_reason,
        )
        stale = [n for n in decision.nodes if n in health.stale_nodes]
        if not health.source_up:
            metrics_condition = (cond.FALSE, health.reason, health.message)
        elif stale:
            metrics_condition = (cond.FALSE, "MetricsStale", f"stale node metrics: {','.join(stale)}")
        else:
            metrics_condition = (
                cond.TRUE,
                st.REASON_METRICS_FRESH,
                f"oldest input {decision.inputs_age_s:.1f}s",
            )
        note = self.tasks.replacement_reason(key) or ""
        patch = st.placement_patch(body, record, now, metrics_condition, note)
        meta = body["metadata"]
        try:
            written = await self._call(self.api.patch_task_status, meta["namespace"], meta["name"], patch)
        except Exception as exc:
            await self._after_failed_write(key, exc, "placement")
            return
        first_seen = self.tasks.first_seen(key)
        self.tasks.done(key, placed=True)
        self.tasks.observe(written)
        self._count_placement(first_seen, record, decision, policy, fallback_reason)
        text = record_message(record)
        if fallback_reason:
            self.events.record(written, WARNING, "Fallback", f"{text} (fallback: {fallback_reason})", now)
        else:
            self.events.record(written, NORMAL, "Scheduled", text, now)

    def _count_placement(
        self,
        first_seen: float | None,
        record: st.PlacementRecord,
        decision: Decision,
        policy: LoadedPolicy,
        fallback: str | None,
    ) -> None:
        t = self.telemetry
        t.schedule_attempts.labels(result="scheduled").inc()
        t.policy_inference.labels(policy=policy.name).observe(decision.inference_s)
        if fallback:
            t.fallback_decisions.labels(reason=fallback).inc()
        if record.attempt == 1 and first_seen is not None:
            result = "fallback" if fallback else "policy"
            t.scheduling_duration.labels(result=result).observe(time.monotonic() - first_seen)

    async def _write_unschedulable(self, key: str, reason: str, message: str) -> None:
        body = self.tasks.get(key)
        self.tasks.done(key, placed=False, defer_until=time.time() + UNSCHEDULABLE_RETRY_S)
        self.telemetry.schedule_attempts.labels(result="unschedulable").inc()
        if body is None:
            return
        now = utcnow()
        patch = st.unschedulable_patch(body, reason, message, now)
        if patch is None:
            return
        meta = body["metadata"]
        try:
            written = await self._call(self.api.patch_task_status, meta["namespace"], meta["name"], patch)
        except Exception as exc:
            await self._after_failed_write(key, exc, "unschedulable condition", release=False)
            return
        self.tasks.observe(written)
        self.events.record(written, WARNING, "FailedScheduling", f"{reason}: {message}", now)

    async def _fail(self, key: str, body: dict[str, Any], reason: str, message: str) -> None:
        now = utcnow()
        meta = body["metadata"]
        try:
            written = await self._call(
                self.api.patch_task_status,
                meta["namespace"],
                meta["name"],
                st.failed_patch(body, reason, message, now),
            )
        except Exception as exc:
            await self._after_failed_write(key, exc, "failure")
            return
        self.tasks.done(key, placed=True)
        self.tasks.observe(written)
        self.telemetry.schedule_attempts.labels(result="failed").inc()
        self.events.record(written, WARNING, "FailedScheduling", f"{reason}: {message}", now)

    async def _after_failed_write(self, key: str, exc: Exception, what: str, release: bool = True) -> None:
        """409: re-read and let the next round decide from the fresh object; 404: forget."""
        if release:
            # Drop the in-memory intent: the fresh object is reviewed or queued again as needed.
            self.tasks.done(key, placed=True)
        namespace, _, name = key.partition("/")
        if is_not_found(exc):
            self.tasks.forget(key)
            return
        if is_conflict(exc):
            self.telemetry.schedule_attempts.labels(result="conflict").inc()
        else:
            self.telemetry.schedule_attempts.labels(result="error").inc()
            log.warning("writing %s for %s failed: %s", what, key, exc)
        try:
            fresh = await self._call(self.api.get_task, namespace, name)
        except Exception as read_exc:
            if is_not_found(read_exc):
                self.tasks.forget(key)
            else:
                # Unknown state: queue it again; the guarded write keeps a retry from double placing.
                body = self.tasks.get(key)
                if body is not None and st.parse_placement(body) is None:
                    self.tasks.observe(body)
            return
        self.tasks.observe(fresh)
        self.notify()


def record_message(record: st.PlacementRecord) -> str:
    return (
        f"attempt {record.attempt} on {','.join(record.nodes)}, {record.steps} steps, policy {record.policy}"
    )
