"""The worker loop: see tasks placed on this node, claim, run in placement order, report.

Level-based like the operator: the task objects are the truth, re-read before every decision,
so a restarted worker recomputes what it holds. On start, a rank it still holds from a previous
incarnation is resumed when it ran alone, and its attempt is failed (retryable) when it was part
of a gang, because the gang's process group died with the old process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aigc_api import lease as lease_api
from aigc_api import status as st
from aigc_api.api_errors import is_transient
from aigc_api.clock import utcnow
from aigc_api.spec import SpecError, parse_generation_request
from aigc_policy.snapshot import Resident

from aigc_worker.claims import Claims, TaskApi
from aigc_worker.execution import Outcome, RankRun
from aigc_worker.parallel.rendezvous import GangError

log = logging.getLogger(__name__)

TaskKey = tuple[str, str]  # namespace, name
WORKER_RESTARTED = "WorkerRestarted"
OUTCOME_RETRY_FIRST_S = 0.5
OUTCOME_RETRY_MAX_S = 5.0


class RankExecutor(Protocol):
    def run(self, run: RankRun) -> Outcome: ...

    def resident_models(self) -> list[str]: ...


class WatchableTaskApi(TaskApi, Protocol):
    def list(self) -> tuple[list[dict[str, Any]], str]: ...

    def watch(self, resource_version: str, timeout_s: int) -> Any: ...

    def upsert_lease(self, namespace: str, body: dict[str, Any]) -> None: ...


@dataclass
class ServiceConfig:
    node: str
    holder: str
    address: str  # host:port of this worker's /metrics, published in its Lease
    rendezvous: str | None  # host:port of this worker's TCPStore, published in rank-0 claims
    lease_namespace: str
    heartbeat_s: float = 5.0
    resync_s: float = 30.0
    idle_wait_s: float = 0.5
    rendezvous_timeout_s: float = 120.0

    @property
    def lease_seconds(self) -> int:
        """leaseDurationSeconds of this worker's Lease: a few heartbeat periods (aigc_api.lease)."""
        return lease_api.lease_seconds_for(self.heartbeat_s)


@dataclass(order=True)
class HeldRank:
    decision_time: datetime
    key: TaskKey
    run: RankRun = field(compare=False)
    estimated_s: float = field(compare=False, default=0.0)


def _decided_at(placement: st.PlacementRecord) -> datetime:
    decided = placement.decision_time
    return decided if decided.tzinfo else decided.replace(tzinfo=UTC)


def _key(body: dict[str, Any]) -> TaskKey:
    meta = body["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Worker:
    def __init__(
        self,
        api: WatchableTaskApi,
        executor: RankExecutor,
        config: ServiceConfig,
        on_queue: Callable[[int], None],
    ) -> None:
        self.api = api
        self.executor = executor
        self.config = config
        self.claims = Claims(api, config.holder)
        self.on_queue = on_queue
        self._tasks: dict[TaskKey, dict[str, Any]] = {}
        self._held: dict[TaskKey, HeldRank] = {}
        self._running: HeldRank | None = None
        self._lock = threading.Lock()
        self._changed = threading.Event()  # the set of tasks placed here changed
        self._queued = threading.Event()  # a rank was added to the held queue
        self._started_at = utcnow()
        self._groups: dict[str, tuple[str, ...]] = {}  # model -> nodes of the last gang that ran it
        # (key, attempt, rank) this incarnation has taken on, so a rank is run at most once even
        # while its finished task is still visible; pruned when the task leaves this node.
        self._accepted: set[tuple[TaskKey, int, int]] = set()
        self._stop = threading.Event()  # serve()'s, so outcome retries end with the worker

    # ---------------------------------------------------------------- seeing tasks

    def observe(self, body: dict[str, Any]) -> None:
        key = _key(body)
        placement = st.parse_placement(body)
        placed_here = placement is not None and self.config.node in placement.nodes
        with self._lock:
            if placed_here and not st.is_terminal(body):
                self._tasks[key] = body
            else:
                self._tasks.pop(key, None)
        self._changed.set()

    def forget(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._tasks.pop(_key(body), None)
        self._changed.set()

    def resync(self) -> str:
        items, resource_version = self.api.list()
        seen = {_key(item) for item in items}
        for item in items:
            self.observe(item)
        with self._lock:
            for key in [k for k in self._tasks if k not in seen]:
                del self._tasks[key]
        return resource_version

    def watch_forever(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                resource_version = self.resync()
                if failures:
                    log.info("task watch resumed after %d failed relist(s)", failures)
                    failures = 0
                deadline = time.monotonic() + self.config.resync_s
                while not stop.is_set() and time.monotonic() < deadline:
                    for kind, body in self.api.watch(resource_version, max(1, int(self.config.resync_s))):
                        if kind == "DELETED":
                            self.forget(body)
                        elif kind in ("ADDED", "MODIFIED"):
                            self.observe(body)
                            resource_version = body["metadata"]["resourceVersion"]
                        elif kind == "BOOKMARK":
                            resource_version = body["metadata"]["resourceVersion"]
                        if stop.is_set():
                            return
            except Exception as exc:
                failures += 1
                log.warning("task watch failed; relisting: %s", exc)
                stop.wait(1.0)

    # ---------------------------------------------------------------- claiming

    def recover(self) -> None:
        """After a restart: resume solo ranks still held by this holder, fail held gang ranks."""
        self.resync()
        for key, body in self._snapshot().items():
            placement = st.parse_placement(body)
            for rank, claim in st.current_claims(body).items():
                if claim.holder != self.config.holder or st.current_failure(body) is not None:
                    continue
                if placement.gang_size == 1:
                    self._hold(key, body, rank)
                else:
                    self.claims.failed(
                        *key,
                        placement.attempt,
                        WORKER_RESTARTED,
                        f"{self.config.node} restarted while holding rank {rank}",
                        retryable=True,
                    )

    def accept_new(self) -> None:
        # In placement order. An idle worker starts the first rank it holds: taking a later gang's
        # rank first could start it ahead of an earlier gang on the same nodes, whose other members
        # run in placement order, and each gang would wait for the other to form.
        placed = []
        for key, body in self._snapshot().items():
            placement = st.parse_placement(body)
            if placement is not None and st.current_failure(body) is None:
                placed.append((_decided_at(placement), key, body, placement))
        for _, key, body, placement in sorted(placed, key=lambda item: item[:2]):
            held = self._held.get(key)
            if held is not None and held.run.attempt == placement.attempt:
                continue
            ranks = st.ranks_on_node(body, self.config.node)
            if len(ranks) != 1:
                self.claims.failed(
                    *key, placement.attempt, st.INVALID_SPEC, f"{self.config.node} placed {len(ranks)} times"
                )
                continue
            if (key, placement.attempt, ranks[0]) in self._accepted:
                continue
            claims = st.current_claims(body)
            holder = claims[ranks[0]].holder if ranks[0] in claims else None
            if holder is not None and holder != self.config.holder:
                continue
            # Unclaimed, or ours without being taken on (a claim write that failed on the way
            # back): our Lease keeps such a claim alive, so it must be run, never left behind.
            rendezvous = self.config.rendezvous if ranks[0] == 0 else None
            if self.claims.claim(*key, placement.attempt, ranks[0], rendezvous):
                self._hold(key, body, ranks[0])

    def _hold(self, key: TaskKey, body: dict[str, Any], rank: int) -> None:
        placement = st.parse_placement(body)
        try:
            request = parse_generation_request(body)
        except (SpecError, KeyError, ValueError) as exc:
            self.claims.failed(*key, placement.attempt, st.INVALID_SPEC, str(exc))
            return
        run = RankRun(
            namespace=key[0],
            name=key[1],
            uid=body["metadata"].get("uid", "/".join(key)),
            attempt=placement.attempt,
            rank=rank,
            nodes=placement.nodes,
            steps=placement.steps,
            request=request,
            policy=placement.policy,
        )
        with self._lock:
            self._accepted.add((key, run.attempt, rank))
            self._held[key] = HeldRank(
                _decided_at(placement), key, run, placement.estimated_service_millis / 1000
            )
            self.on_queue(len(self._held))
        self._queued.set()

    def _snapshot(self) -> dict[TaskKey, dict[str, Any]]:
        with self._lock:
            return dict(self._tasks)

    # ---------------------------------------------------------------- running

    def run_next(self) -> bool:
        """Run the earliest-placed held rank, if any; True if one ran or was found obsolete.

        False also when the API server could not be asked (down, or refusing while its RBAC warms
        up after a restart): the rank is still held, so it goes back to the queue, never dropped.
        """
        with self._lock:
            if not self._held:
                return False
            held = min(self._held.values())
            del self._held[held.key]
            self.on_queue(len(self._held))
        run = held.run
        try:
            if not self._still_current(run):
                return True
            if run.rank == 0:
                self._write(lambda: self.claims.started(run.namespace, run.name, run.attempt))
        except Exception as exc:
            if not is_transient(exc):
                log.info("%s/%s not run: %s", run.namespace, run.name, exc)
                return True
            log.warning("%s/%s not started, API server unavailable: %s", run.namespace, run.name, exc)
            self._requeue(held)
            return False
        self._running = held
        try:
            outcome = self.executor.run(run)
        finally:
            self._running = None
        self._report(run, outcome)
        if outcome.succeeded:
            self._groups[run.request.model] = tuple(sorted(run.nodes))
        return True

    def _still_current(self, run: RankRun) -> bool:
        body = self.api.get(run.namespace, run.name)
        placement = st.parse_placement(body)
        return not (
            placement is None
            or placement.attempt != run.attempt
            or st.is_terminal(body)
            or st.current_failure(body)
        )

    def _requeue(self, held: HeldRank) -> None:
        with self._lock:
            self._held.setdefault(held.key, held)  # unless a newer attempt was taken on meanwhile
            self.on_queue(len(self._held))

    def _report(self, run: RankRun, outcome: Outcome) -> None:
        if not outcome.succeeded:
            log.warning(
                "rank %d of %s/%s failed: %s %s",
                run.rank,
                run.namespace,
                run.name,
                outcome.reason,
                outcome.message,
            )
            self._deliver(
                lambda: self.claims.failed(
                    run.namespace, run.name, run.attempt, outcome.reason, outcome.message, outcome.retryable
                )
            )
        elif run.rank == 0 and outcome.result is not None:
            result = st.TaskResult(
                outcome.result.uri, outcome.result.sha256, outcome.result.size_bytes, run.seed
            )
            self._deliver(lambda: self.claims.succeeded(run.namespace, run.name, run.attempt, result))

    def _write(self, write: Callable[[], None]) -> None:
        try:
            write()
        except st.ClaimRejected as exc:
            log.info("status write skipped: %s", exc)

    def _deliver(self, write: Callable[[], None]) -> None:
        """An outcome write, retried while the API server is unavailable.

        Giving up would strand the task: its claim stays alive on this worker's Lease, and no
        other worker may take it, so an API-server outage must only delay the report.
        """
        delay = OUTCOME_RETRY_FIRST_S
        while True:
            try:
                self._write(write)
                return
            except Exception as exc:
                if not is_transient(exc):
                    log.error("status write failed for good: %s", exc)
                    return
                log.warning("status write failed, retrying in %.1fs: %s", delay, exc)
            if self._stop.wait(delay):
                return
            delay = min(2 * delay, OUTCOME_RETRY_MAX_S)

    def wait_for_rendezvous(self, run: RankRun) -> str:
        deadline = time.monotonic() + self.config.rendezvous_timeout_s
        while time.monotonic() < deadline:
            body = self.api.get(run.namespace, run.name)
            placement = st.parse_placement(body)
            if (
                placement is None
                or placement.attempt != run.attempt
                or st.current_failure(body)
                or st.is_terminal(body)
            ):
                raise GangError(
                    st.RENDEZVOUS_FAILED, "the attempt ended before rank 0 published its rendezvous"
                )
            address = st.rendezvous_of(body)
            if address:
                return address
            time.sleep(0.2)
        raise GangError(
            st.RENDEZVOUS_FAILED, f"rank 0 did not claim within {self.config.rendezvous_timeout_s}s"
        )

    def gang_problem(self, run: RankRun) -> str | None:
        """Why this rank should stop waiting for its gang, or None while it should keep waiting."""
        body = self.api.get(run.namespace, run.name)
        placement = st.parse_placement(body)
        if placement is None or placement.attempt != run.attempt or st.is_terminal(body):
            return f"attempt {run.attempt} is no longer current"
        if st.current_failure(body):
            return f"attempt {run.attempt} already failed"
        ttl = timedelta(seconds=3 * self.config.heartbeat_s)
        lost = st.expired_ranks(body, utcnow(), ttl, timedelta(seconds=self.config.rendezvous_timeout_s))
        if lost:
            return "gang members stopped answering: " + ", ".join(
                f"rank {r} {why}" for r, why in sorted(lost.items())
            )
        return None

    # ---------------------------------------------------------------- liveness

    def heartbeat(self) -> None:
        """Renew this worker's Lease (which keeps all its claims alive, aigc_api.status) and the
        claims whose peers watch them: the running rank and queued gang ranks (`gang_problem`).

        Queued solo ranks cost no API call: a period is O(1) requests however deep the queue.
        """
        self._prune_held()
        running = self._running
        watched = [h for h in list(self._held.values()) if len(h.run.nodes) > 1]
        for item in ([running] if running else []) + watched:
            run = item.run
            try:
                alive = self.claims.heartbeat(run.namespace, run.name, run.attempt, run.rank)
            except Exception:
                log.warning("heartbeat for %s/%s failed", run.namespace, run.name, exc_info=True)
                continue
            if not alive and item is not running:
                with self._lock:
                    self._held.pop(item.key, None)
        self.publish_lease()

    def _prune_held(self) -> None:
        """Drop queued ranks the watched tasks show are over or taken (no API calls)."""
        tasks = self._snapshot()
        with self._lock:
            for key, held in list(self._held.items()):
                body = tasks.get(key)
                placement = st.parse_placement(body) if body is not None else None
                claim = st.current_claims(body).get(held.run.rank) if body is not None else None
                if (
                    body is None
                    or placement is None
                    or placement.attempt != held.run.attempt
                    or (claim is not None and claim.holder != self.config.holder)
                ):
                    del self._held[key]
            self._accepted = {a for a in self._accepted if a[0] in tasks}
            self.on_queue(len(self._held))

    def publish_lease(self) -> None:
        now = utcnow()
        queued = sum(h.estimated_s for h in list(self._held.values()))
        running = self._running.estimated_s if self._running else 0.0
        resident = tuple(
            Resident(model, self._groups.get(model, (self.config.node,)))
            for model in self.executor.resident_models()
        )
        status = lease_api.WorkerStatus(
            node=self.config.node,
            holder=self.config.holder,
            address=self.config.address,
            renew_time=now,
            lease_seconds=self.config.lease_seconds,
            resident=resident,
            free_at=now + timedelta(seconds=queued + running),
            queue_length=len(self._held) + (1 if self._running else 0),
        )
        self.api.upsert_lease(
            self.config.lease_namespace,
            lease_api.to_lease_body(status, self.config.lease_namespace, self._started_at),
        )

    def serve(self, stop: threading.Event) -> None:
        """Watch, claim and run until `stop`; queued (unstarted) ranks are released on the way out."""
        self._stop = stop
        self.recover()
        threading.Thread(target=self.watch_forever, args=(stop,), name="task-watch", daemon=True).start()
        threading.Thread(target=self._heartbeat_forever, args=(stop,), name="heartbeat", daemon=True).start()
        # Claiming runs beside execution: a placement queued behind a long task is still claimed
        # (and heartbeated) at once, so the operator never mistakes a busy worker for a dead one.
        threading.Thread(target=self._claim_forever, args=(stop,), name="claim", daemon=True).start()
        while not stop.is_set():
            try:
                ran = self.run_next()
            except Exception:
                log.exception("worker loop error; continuing")
                ran = False
            if not ran:
                self._queued.wait(self.config.idle_wait_s)
                self._queued.clear()
        for held in list(self._held.values()):
            self._write(lambda h=held: self.claims.release(h.key[0], h.key[1], h.run.attempt, h.run.rank))

    def _claim_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._changed.wait(self.config.idle_wait_s)
            self._changed.clear()
            try:
                self.accept_new()
            except Exception:
                log.exception("claim loop error; continuing")

    def _heartbeat_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.heartbeat()
            except Exception:
                log.warning("heartbeat round failed", exc_info=True)
            stop.wait(self.config.heartbeat_s)
