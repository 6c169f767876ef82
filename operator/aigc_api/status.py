"""The AIGCTask status format and every write to it, as pure functions returning patch bodies.

Layout (field names are the contract between operator and worker):

    status:
      phase: Pending | Scheduled | Running | Succeeded | Failed
      observedGeneration: int
      attempts: int                     # placements made so far
      conditions: [{type, status, reason, message, lastTransitionTime, observedGeneration}]
      placement: {attempt, nodes[], gangSize, steps, policy, policyVersion, decisionTime,
                  inputsAgeMillis, estimatedServiceMillis, fallbackReason?}
      claims: [{attempt, rank, node, holder, heartbeatTime, rendezvous?}]   # rendezvous on rank 0
      timings: {queuedTime, scheduledTime, startedTime, finishedTime,
                schedulingMillis, waitMillis, runMillis}
      result: {uri, sha256, sizeBytes, seed?}
      failure: {attempt, reason, message, retryable}

Rank r of attempt N runs on `placement.nodes[r]`. Writes that depend on what the writer read are
JSON merge patches carrying `metadata.resourceVersion`: the API server answers 409 Conflict when
the object changed meanwhile, and the writer re-reads and re-builds (see `guarded_update`).
Heartbeats are JSON Patches guarded by `test` operations on the claim itself, so sibling ranks
renewing at the same time never conflict. All patches go to the `status` subresource.

Claim liveness (`claim_deadline`): a claim is alive while the worker Lease of its node is fresh and
held by the claim's holder; heartbeatTime is the fallback when no Lease is known, so a worker only
needs to renew its Lease (and, optionally, the claim of the rank it is running) each period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aigc_api import conditions as cond
from aigc_api.clock import format_time, millis_between, parse_time

# Phases.
PENDING = "Pending"
SCHEDULED = "Scheduled"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})

# Failure reasons (status.failure.reason, condition reasons, Event reasons).
UNKNOWN_MODEL = "UnknownModel"
INVALID_SPEC = "InvalidSpec"
CLAIM_EXPIRED = "ClaimExpired"  # a holder stopped renewing its heartbeat
CLAIM_TIMEOUT = "ClaimTimeout"  # a rank was never claimed
NODE_LOST = "NodeLost"  # a placed node went NotReady or was deleted
WORKER_ERROR = "WorkerError"
OUT_OF_MEMORY = "OutOfMemory"
MODEL_LOAD_FAILED = "ModelLoadFailed"
RENDEZVOUS_FAILED = "RendezvousFailed"
MAX_ATTEMPTS_EXCEEDED = "MaxAttemptsExceeded"
UNSCHEDULABLE = "Unschedulable"  # no GPU class of the perf profile can ever run the task
RETRYABLE_REASONS = frozenset(
    {
        CLAIM_EXPIRED,
        CLAIM_TIMEOUT,
        NODE_LOST,
        WORKER_ERROR,
        OUT_OF_MEMORY,
        MODEL_LOAD_FAILED,
        RENDEZVOUS_FAILED,
    }
)

# Condition reasons that are not failures.
REASON_POLICY_DECISION = "PolicyDecision"
REASON_FALLBACK = "Fallback"
REASON_WAITING = "WaitingForCapacity"
REASON_CLAIMED = "Claimed"
REASON_STARTED = "Started"
REASON_COMPLETED = "Completed"
REASON_METRICS_FRESH = "MetricsFresh"


class ClaimRejected(Exception):
    """This worker may not claim (or act on) the rank; `reason` says why, the task is left untouched."""


@dataclass(frozen=True, slots=True)
class PlacementRecord:
    attempt: int
    nodes: tuple[str, ...]
    steps: int
    policy: str
    policy_version: str
    decision_time: datetime
    inputs_age_millis: int
    estimated_service_millis: int = 0
    fallback_reason: str | None = None

    @property
    def gang_size(self) -> int:
        return len(self.nodes)

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempt": self.attempt,
            "nodes": list(self.nodes),
            "gangSize": self.gang_size,
            "steps": self.steps,
            "policy": self.policy,
            "policyVersion": self.policy_version,
            "decisionTime": format_time(self.decision_time),
            "inputsAgeMillis": self.inputs_age_millis,
            "estimatedServiceMillis": self.estimated_service_millis,
        }
        if self.fallback_reason:
            out["fallbackReason"] = self.fallback_reason
        return out


@dataclass(frozen=True, slots=True)
class Claim:
    attempt: int
    rank: int
    node: str
    holder: str
    heartbeat_time: datetime
    rendezvous: str | None = None

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempt": self.attempt,
            "rank": self.rank,
            "node": self.node,
            "holder": self.holder,
            "heartbeatTime": format_time(self.heartbeat_time),
        }
        if self.rendezvous:
            out["rendezvous"] = self.rendezvous
        return out


@dataclass(frozen=True, slots=True)
class TaskResult:
    uri: str
    sha256: str
    size_bytes: int
    seed: int | None = None

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri, "sha256": self.sha256, "sizeBytes": self.size_bytes}
        if self.seed is not None:
            out["seed"] = self.seed
        return out


# ------------------------------------------------------------------ reading


def status_of(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("status") or {}


def phase_of(body: dict[str, Any]) -> str:
    return status_of(body).get("phase") or PENDING


def is_terminal(body: dict[str, Any]) -> bool:
    return phase_of(body) in TERMINAL_PHASES


def parse_placement(body: dict[str, Any]) -> PlacementRecord | None:
    raw = status_of(body).get("placement")
    if not raw:
        return None
    return PlacementRecord(
        attempt=int(raw["attempt"]),
        nodes=tuple(raw["nodes"]),
        steps=int(raw["steps"]),
        policy=raw.get("policy", ""),
        policy_version=raw.get("policyVersion", ""),
        decision_time=parse_time(raw.get("decisionTime")) or datetime.min,
        inputs_age_millis=int(raw.get("inputsAgeMillis", 0)),
        estimated_service_millis=int(raw.get("estimatedServiceMillis", 0)),
        fallback_reason=raw.get("fallbackReason"),
    )


def parse_claims(body: dict[str, Any]) -> list[Claim]:
    return [
        Claim(
            attempt=int(raw["attempt"]),
            rank=int(raw["rank"]),
            node=raw["node"],
            holder=raw["holder"],
            heartbeat_time=parse_time(raw["heartbeatTime"]) or datetime.min,
            rendezvous=raw.get("rendezvous"),
        )
        for raw in status_of(body).get("claims") or ()
    ]


def current_claims(body: dict[str, Any]) -> dict[int, Claim]:
    """Claims of the current placement attempt, by rank."""
    placement = parse_placement(body)
    if placement is None:
        return {}
    return {c.rank: c for c in parse_claims(body) if c.attempt == placement.attempt}


def rendezvous_of(body: dict[str, Any]) -> str | None:
    """host:port of rank 0 of the current attempt, once rank 0 has claimed."""
    rank0 = current_claims(body).get(0)
    return rank0.rendezvous if rank0 else None


def ranks_on_node(body: dict[str, Any], node: str) -> list[int]:
    placement = parse_placement(body)
    return [] if placement is None else [r for r, n in enumerate(placement.nodes) if n == node]


def current_failure(body: dict[str, Any]) -> dict[str, Any] | None:
    """status.failure if it belongs to the current attempt (older ones are history)."""
    failure = status_of(body).get("failure")
    placement = parse_placement(body)
    if not failure or placement is None or failure.get("attempt") != placement.attempt:
        return None
    return failure


class WorkerLease(Protocol):
    """What claim liveness needs from a worker Lease (aigc_api.lease.WorkerStatus has it)."""

    @property
    def holder(self) -> str: ...

    @property
    def renew_time(self) -> datetime: ...

    @property
    def lease_seconds(self) -> int: ...


def lease_expiry(lease: WorkerLease, heartbeat_ttl: timedelta | None = None) -> datetime:
    """When a worker Lease stops counting as alive: renewTime + leaseDurationSeconds, or + the
    operator's heartbeat TTL if that is shorter (so a dead worker never outlives its claims)."""
    duration = timedelta(seconds=lease.lease_seconds)
    if heartbeat_ttl is not None:
        duration = min(duration, heartbeat_ttl)
    return lease.renew_time + duration


def claim_deadline(claim: Claim, heartbeat_ttl: timedelta, lease: WorkerLease | None) -> datetime | None:
    """Until when `claim` counts as alive; None: it is dead already.

    THE claim liveness rule (as Kubernetes does with node Leases). With no worker Lease known for
    the claim's node, the claim's own heartbeatTime + TTL decides (backwards compatible). With one,
    the claim lives while that Lease is fresh (`lease_expiry`) AND held by the claim's holder: a
    restarted worker with a new identity does not keep the old claims. A heartbeat the holder
    still renews (its running rank) keeps the claim alive too.
    """
    by_heartbeat = claim.heartbeat_time + heartbeat_ttl
    if lease is None:
        return by_heartbeat
    if lease.holder != claim.holder:
        return None
    return max(lease_expiry(lease, heartbeat_ttl), by_heartbeat)


def expired_ranks(
    body: dict[str, Any],
    now: datetime,
    heartbeat_ttl: timedelta,
    claim_timeout: timedelta,
    worker_lease: Callable[[str], WorkerLease | None] | None = None,
) -> dict[int, str]:
    """Ranks of the current attempt that lost their worker: rank -> CLAIM_EXPIRED | CLAIM_TIMEOUT.

    `worker_lease(node)` is the reader's view of the worker Lease of `node` (None: unknown); see
    `claim_deadline` for the rule.
    """
    placement = parse_placement(body)
    if placement is None or is_terminal(body):
        return {}
    claims = current_claims(body)
    lost: dict[int, str] = {}
    for rank in range(placement.gang_size):
        claim = claims.get(rank)
        if claim is None:
            if now - placement.decision_time > claim_timeout:
                lost[rank] = CLAIM_TIMEOUT
            continue
        lease = worker_lease(claim.node) if worker_lease is not None else None
        deadline = claim_deadline(claim, heartbeat_ttl, lease)
        if deadline is None or now > deadline:
            lost[rank] = CLAIM_EXPIRED
    return lost


def next_expiry(
    body: dict[str, Any],
    heartbeat_ttl: timedelta,
    claim_timeout: timedelta,
    worker_lease: Callable[[str], WorkerLease | None] | None = None,
) -> datetime | None:
    """The earliest moment `expired_ranks` can change its answer without a new write (None: never)."""
    placement = parse_placement(body)
    if placement is None or is_terminal(body):
        return None
    claims = current_claims(body)
    times: list[datetime] = []
    for rank in range(placement.gang_size):
        claim = claims.get(rank)
        if claim is None:
            times.append(placement.decision_time + claim_timeout)
            continue
        lease = worker_lease(claim.node) if worker_lease is not None else None
        deadline = claim_deadline(claim, heartbeat_ttl, lease)
        if deadline is not None:
            times.append(deadline)
    return min(times, default=None)


# ------------------------------------------------------------------ writing: common


def _guarded(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": status}


def _generation(body: dict[str, Any]) -> int | None:
    generation = body["metadata"].get("generation")
    return None if generation is None else int(generation)


def _require_attempt(body: dict[str, Any], attempt: int) -> PlacementRecord:
    placement = parse_placement(body)
    if placement is None or placement.attempt != attempt:
        raise ClaimRejected(f"attempt {attempt} is no longer current")
    if is_terminal(body):
        raise ClaimRejected(f"task is already {phase_of(body)}")
    return placement


def guarded_update(
    read: Callable[[], dict[str, Any]],
    build: Callable[[dict[str, Any]], dict[str, Any] | None],
    write: Callable[[dict[str, Any]], dict[str, Any]],
    is_conflict: Callable[[Exception], bool],
    max_tries: int = 5,
) -> dict[str, Any] | None:
    """Read, build a resourceVersion-guarded patch, write; on 409 re-read and re-build.

    `build` returns None when nothing needs writing (or raises ClaimRejected); the result is the
    object the server returned, or None when nothing was written.
    """
    for _ in range(max_tries):
        body = read()
        patch = build(body)
        if patch is None:
            return None
        try:
            return write(patch)
        except Exception as exc:
            if not is_conflict(exc):
                raise
    raise TimeoutError(f"gave up after {max_tries} conflicting writes")


# ------------------------------------------------------------------ writing: operator


def placement_patch(
    body: dict[str, Any],
    record: PlacementRecord,
    now: datetime,
    metrics_condition: tuple[str, str, str],
    note: str = "",
) -> dict[str, Any]:
    """Place attempt `record.attempt`: claims cleared, phase Scheduled. `metrics_condition` is
    (status, reason, message) of MetricsAvailable at decision time; `note` says why a new attempt."""
    status = status_of(body)
    created = parse_time(body["metadata"].get("creationTimestamp")) or now
    timings = dict(status.get("timings") or {})
    timings.setdefault("queuedTime", format_time(created))
    timings["scheduledTime"] = format_time(now)
    timings["schedulingMillis"] = millis_between(created, now)
    generation = _generation(body)
    mode = f"fallback ({record.fallback_reason})" if record.fallback_reason else f"policy {record.policy}"
    message = f"attempt {record.attempt} on {','.join(record.nodes)} with {record.steps} steps by {mode}"
    if note:
        message = f"{message}; {note}"
    conditions = cond.set_condition(
        status.get("conditions"),
        cond.SCHEDULED,
        cond.TRUE,
        REASON_FALLBACK if record.fallback_reason else REASON_POLICY_DECISION,
        message,
        now,
        generation,
    )
    conditions = cond.set_condition(conditions, cond.METRICS_AVAILABLE, *metrics_condition, now, generation)
    if cond.find_condition(conditions, cond.RUNNING) is not None:
        conditions = cond.set_condition(
            conditions, cond.RUNNING, cond.FALSE, REASON_WAITING, "re-placed", now, generation
        )
    return _guarded(
        body,
        {
            "phase": SCHEDULED,
            "observedGeneration": generation,
            "attempts": record.attempt,
            "placement": record.to_status(),
            "claims": [],
            "timings": timings,
            "conditions": conditions,
        },
    )


def unschedulable_patch(
    body: dict[str, Any], reason: str, message: str, now: datetime
) -> dict[str, Any] | None:
    """Record why a task still waits (Scheduled=False); None when that is already recorded."""
    status = status_of(body)
    previous = cond.find_condition(status.get("conditions"), cond.SCHEDULED)
    if previous and previous.get("status") == cond.FALSE and previous.get("reason") == reason:
        return None
    generation = _generation(body)
    conditions = cond.set_condition(
        status.get("conditions"), cond.SCHEDULED, cond.FALSE, reason, message, now, generation
    )
    return _guarded(
        body,
        {"phase": status.get("phase") or PENDING, "observedGeneration": generation, "conditions": conditions},
    )


def failed_patch(body: dict[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any]:
    """Terminal failure decided by the operator (unknown model, attempts exhausted, ...)."""
    status = status_of(body)
    generation = _generation(body)
    placement = parse_placement(body)
    conditions = cond.set_condition(
        status.get("conditions"), cond.SUCCEEDED, cond.FALSE, reason, message, now, generation
    )
    if placement is None:
        conditions = cond.set_condition(
            conditions, cond.SCHEDULED, cond.FALSE, reason, message, now, generation
        )
    if cond.condition_is(conditions, cond.RUNNING, cond.TRUE):
        conditions = cond.set_condition(
            conditions, cond.RUNNING, cond.FALSE, reason, message, now, generation
        )
    timings = dict(status.get("timings") or {})
    timings["finishedTime"] = format_time(now)
    return _guarded(
        body,
        {
            "phase": FAILED,
            "observedGeneration": generation,
            "conditions": conditions,
            "timings": timings,
            "failure": {
                "attempt": placement.attempt if placement else 0,
                "reason": reason,
                "message": message,
                "retryable": False,
            },
        },
    )


# ------------------------------------------------------------------ writing: worker


def claim_patch(
    body: dict[str, Any],
    *,
    attempt: int,
    rank: int,
    holder: str,
    now: datetime,
    rendezvous: str | None = None,
) -> dict[str, Any] | None:
    """Claim `rank` of `attempt` for `holder`; None if `holder` already holds it.

    Raises ClaimRejected if the attempt is not current, the rank is not on a node of this
    placement, or someone else holds it. Rank 0 must pass its `rendezvous` host:port for gangs.
    """
    placement = _require_attempt(body, attempt)
    if not 0 <= rank < placement.gang_size:
        raise ClaimRejected(f"rank {rank} is outside gang size {placement.gang_size}")
    existing = current_claims(body).get(rank)
    if existing is not None:
        if existing.holder == holder:
            return None
        raise ClaimRejected(f"rank {rank} is held by {existing.holder}")
    claim = Claim(attempt, rank, placement.nodes[rank], holder, now, rendezvous)
    claims = [c.to_status() for c in parse_claims(body) if c.attempt == attempt]
    claims.append(claim.to_status())
    return _guarded(body, {"claims": claims})


def heartbeat_patch(
    body: dict[str, Any], *, attempt: int, rank: int, holder: str, now: datetime
) -> list[dict[str, Any]]:
    """JSON Patch renewing one claim; it fails (422) if that claim moved or changed hands.

    Raises ClaimRejected if `holder` does not hold (attempt, rank) in `body`.
    """
    for index, raw in enumerate(status_of(body).get("claims") or ()):
        if raw.get("attempt") == attempt and raw.get("rank") == rank:
            if raw.get("holder") != holder:
                break
            path = f"/status/claims/{index}"
            return [
                {"op": "test", "path": f"{path}/attempt", "value": attempt},
                {"op": "test", "path": f"{path}/rank", "value": rank},
                {"op": "test", "path": f"{path}/holder", "value": holder},
                {"op": "replace", "path": f"{path}/heartbeatTime", "value": format_time(now)},
            ]
    raise ClaimRejected(f"{holder} does not hold rank {rank} of attempt {attempt}")


def release_patch(body: dict[str, Any], *, attempt: int, rank: int, holder: str) -> dict[str, Any] | None:
    """Give a rank back (graceful worker shutdown before it started); None if not held."""
    claims = parse_claims(body)
    kept = [c for c in claims if not (c.attempt == attempt and c.rank == rank and c.holder == holder)]
    if len(kept) == len(claims):
        return None
    return _guarded(body, {"claims": [c.to_status() for c in kept]})


def started_patch(body: dict[str, Any], *, attempt: int, now: datetime) -> dict[str, Any] | None:
    """Rank 0 reports the gang running; None if already recorded for this attempt."""
    _require_attempt(body, attempt)
    status = status_of(body)
    if status.get("phase") == RUNNING:
        return None
    generation = _generation(body)
    timings = dict(status.get("timings") or {})
    timings["startedTime"] = format_time(now)
    queued = parse_time(timings.get("queuedTime")) or parse_time(body["metadata"].get("creationTimestamp"))
    if queued is not None:
        timings["waitMillis"] = millis_between(queued, now)
    conditions = cond.set_condition(
        status.get("conditions"),
        cond.RUNNING,
        cond.TRUE,
        REASON_STARTED,
        f"attempt {attempt} started",
        now,
        generation,
    )
    return _guarded(body, {"phase": RUNNING, "timings": timings, "conditions": conditions})


def succeeded_patch(
    body: dict[str, Any], *, attempt: int, result: TaskResult, now: datetime
) -> dict[str, Any]:
    """Rank 0 publishes the result: phase Succeeded."""
    _require_attempt(body, attempt)
    status = status_of(body)
    generation = _generation(body)
    timings = dict(status.get("timings") or {})
    timings["finishedTime"] = format_time(now)
    started = parse_time(timings.get("startedTime"))
    if started is not None:
        timings["runMillis"] = millis_between(started, now)
    conditions = cond.set_condition(
        status.get("conditions"), cond.RUNNING, cond.FALSE, REASON_COMPLETED, "done", now, generation
    )
    conditions = cond.set_condition(
        conditions, cond.SUCCEEDED, cond.TRUE, REASON_COMPLETED, result.uri, now, generation
    )
    return _guarded(
        body, {"phase": SUCCEEDED, "timings": timings, "conditions": conditions, "result": result.to_status()}
    )


def attempt_failed_patch(
    body: dict[str, Any],
    *,
    attempt: int,
    reason: str,
    message: str,
    now: datetime,
    retryable: bool | None = None,
) -> dict[str, Any] | None:
    """Any member fails the attempt; the operator then re-places it or fails the task.

    `retryable` defaults to whether `reason` is in RETRYABLE_REASONS. None if this attempt
    already carries a failure (the first one wins).
    """
    _require_attempt(body, attempt)
    if current_failure(body) is not None:
        return None
    status = status_of(body)
    generation = _generation(body)
    conditions = cond.set_condition(
        status.get("conditions"), cond.RUNNING, cond.FALSE, reason, message, now, generation
    )
    failure = {
        "attempt": attempt,
        "reason": reason,
        "message": message,
        "retryable": reason in RETRYABLE_REASONS if retryable is None else retryable,
    }
    return _guarded(body, {"conditions": conditions, "failure": failure})


def all_ranks_claimed(body: dict[str, Any]) -> bool:
    placement = parse_placement(body)
    return placement is not None and set(current_claims(body)) == set(range(placement.gang_size))
