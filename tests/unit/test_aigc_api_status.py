"""The status contract between operator and worker: placement, claims, heartbeats, outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aigc_api import conditions as cond
from aigc_api import status as st
from aigc_api.clock import format_time, parse_time
from aigc_api.lease import WorkerStatus

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def task(rv: str = "10", status: dict | None = None) -> dict:
    return {
        "metadata": {
            "name": "t1",
            "namespace": "ns",
            "resourceVersion": rv,
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:04:05Z",
        },
        "spec": {"model": "sd-turbo", "prompt": "x", "steps": 4},
        "status": status or {},
    }


def apply_merge(body: dict, patch: dict, rv: str) -> dict:
    """What the API server does with our merge patches (status subtree is replaced key by key)."""
    assert patch["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    out = {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
    out["status"] = {**body.get("status", {}), **patch["status"]}
    return out


def record(attempt: int = 1, nodes: tuple[str, ...] = ("edge-0", "edge-1")) -> st.PlacementRecord:
    return st.PlacementRecord(attempt, nodes, 4, "eat", "abc123", T0, 1500, 2300)


def placed(attempt: int = 1) -> dict:
    patch = st.placement_patch(task(), record(attempt), T0, (cond.TRUE, st.REASON_METRICS_FRESH, "ok"))
    return apply_merge(task(), patch, "11")


def test_placement_patch_is_guarded_and_round_trips() -> None:
    patch = st.placement_patch(task(), record(), T0, (cond.FALSE, "PrometheusDown", "refused"))
    assert patch["metadata"] == {"resourceVersion": "10"}
    s = patch["status"]
    assert s["phase"] == st.SCHEDULED and s["attempts"] == 1 and s["claims"] == []
    assert s["placement"]["nodes"] == ["edge-0", "edge-1"] and s["placement"]["gangSize"] == 2
    assert s["timings"]["schedulingMillis"] == 678
    assert cond.condition_is(s["conditions"], cond.METRICS_AVAILABLE, cond.FALSE)
    body = apply_merge(task(), patch, "11")
    assert st.parse_placement(body) == record()


def test_condition_transition_time_only_changes_with_status() -> None:
    first = cond.set_condition([], cond.SCHEDULED, cond.FALSE, "A", "m", T0)
    later = T0 + timedelta(seconds=5)
    same = cond.set_condition(first, cond.SCHEDULED, cond.FALSE, "B", "m2", later)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"] and same[0]["reason"] == "B"
    flipped = cond.set_condition(same, cond.SCHEDULED, cond.TRUE, "C", "m3", later)
    assert flipped[0]["lastTransitionTime"] == format_time(later)
    assert len(flipped) == 1


def test_claim_is_exclusive_per_rank_and_idempotent_for_holder() -> None:
    body = placed()
    patch = st.claim_patch(body, attempt=1, rank=0, holder="w0", now=T0, rendezvous="10.0.0.1:29500")
    assert patch is not None and patch["metadata"]["resourceVersion"] == "11"
    body = apply_merge(body, patch, "12")
    assert st.rendezvous_of(body) == "10.0.0.1:29500"
    assert st.claim_patch(body, attempt=1, rank=0, holder="w0", now=T0) is None
    with pytest.raises(st.ClaimRejected, match="held by w0"):
        st.claim_patch(body, attempt=1, rank=0, holder="intruder", now=T0)
    with pytest.raises(st.ClaimRejected, match="outside gang"):
        st.claim_patch(body, attempt=1, rank=2, holder="w2", now=T0)
    with pytest.raises(st.ClaimRejected, match="no longer current"):
        st.claim_patch(body, attempt=2, rank=1, holder="w1", now=T0)
    body = apply_merge(body, st.claim_patch(body, attempt=1, rank=1, holder="w1", now=T0), "13")
    assert st.all_ranks_claimed(body)
    assert st.ranks_on_node(body, "edge-1") == [1]


def test_heartbeat_is_a_tested_json_patch() -> None:
    body = placed()
    body = apply_merge(body, st.claim_patch(body, attempt=1, rank=0, holder="w0", now=T0), "12")
    ops = st.heartbeat_patch(body, attempt=1, rank=0, holder="w0", now=T0 + timedelta(seconds=3))
    assert [op["op"] for op in ops] == ["test", "test", "test", "replace"]
    assert ops[-1] == {
        "op": "replace",
        "path": "/status/claims/0/heartbeatTime",
        "value": "2026-01-02T03:04:08.678Z",
    }
    with pytest.raises(st.ClaimRejected):
        st.heartbeat_patch(body, attempt=1, rank=0, holder="w9", now=T0)


def test_expired_and_never_claimed_ranks() -> None:
    body = placed()
    body = apply_merge(body, st.claim_patch(body, attempt=1, rank=0, holder="w0", now=T0), "12")
    ttl, timeout = timedelta(seconds=30), timedelta(seconds=60)
    assert st.expired_ranks(body, T0 + timedelta(seconds=10), ttl, timeout) == {}
    assert st.expired_ranks(body, T0 + timedelta(seconds=45), ttl, timeout) == {0: st.CLAIM_EXPIRED}
    assert st.expired_ranks(body, T0 + timedelta(seconds=61), ttl, timeout) == {
        0: st.CLAIM_EXPIRED,
        1: st.CLAIM_TIMEOUT,
    }


def _lease(holder: str, renewed: datetime, seconds: int = 15) -> WorkerStatus:
    return WorkerStatus(node="edge-0", holder=holder, address="", renew_time=renewed, lease_seconds=seconds)


def _claimed_solo(holder: str = "w0") -> dict:
    body = apply_merge(
        task(), st.placement_patch(task(), record(nodes=("edge-0",)), T0, ("True", "", "")), "11"
    )
    return apply_merge(body, st.claim_patch(body, attempt=1, rank=0, holder=holder, now=T0), "12")


def test_claim_alive_with_stale_heartbeat_while_its_holders_lease_is_fresh() -> None:
    body = _claimed_solo()
    ttl, timeout = timedelta(seconds=10), timedelta(seconds=60)
    now = T0 + timedelta(minutes=10)  # the claim's own heartbeat is 10 minutes old
    leases = {"edge-0": _lease("w0", now - timedelta(seconds=3))}
    assert st.expired_ranks(body, now, ttl, timeout) == {0: st.CLAIM_EXPIRED}  # no Lease: heartbeat
    assert st.expired_ranks(body, now, ttl, timeout, leases.get) == {}
    # It lives until the Lease would expire: renewTime + min(leaseDurationSeconds, TTL).
    assert st.next_expiry(body, ttl, timeout, leases.get) == now + timedelta(seconds=7)
    assert st.expired_ranks(body, now, ttl, timeout, {"edge-9": leases["edge-0"]}.get) != {}


def test_claim_expires_with_its_holders_lease() -> None:
    body = _claimed_solo()
    ttl, timeout = timedelta(seconds=10), timedelta(seconds=60)
    now = T0 + timedelta(minutes=10)
    stale = {"edge-0": _lease("w0", now - timedelta(seconds=16))}  # past its 15 s
    assert st.expired_ranks(body, now, ttl, timeout, stale.get) == {0: st.CLAIM_EXPIRED}
    # The operator's TTL caps a longer Lease: 30 s Lease renewed 11 s ago, TTL 10 s.
    capped = {"edge-0": _lease("w0", now - timedelta(seconds=11), seconds=30)}
    assert st.expired_ranks(body, now, ttl, timeout, capped.get) == {0: st.CLAIM_EXPIRED}
    assert not capped["edge-0"].alive(now, ttl) and capped["edge-0"].alive(now)
    # A heartbeat the holder still renews (its running rank) keeps the claim alive meanwhile.
    renewed = apply_merge(
        body,
        {
            "metadata": {"resourceVersion": "12"},
            "status": {
                "claims": [
                    {**body["status"]["claims"][0], "heartbeatTime": format_time(now - timedelta(seconds=2))}
                ]
            },
        },
        "13",
    )
    assert st.expired_ranks(renewed, now, ttl, timeout, stale.get) == {}


def test_claim_expires_when_the_lease_holder_differs() -> None:
    """A restarted worker with a new identity does not keep the old incarnation's claims."""
    body = _claimed_solo(holder="w0-old")
    ttl, timeout = timedelta(seconds=10), timedelta(seconds=60)
    now = T0 + timedelta(seconds=1)  # the claim's own heartbeat is fresh, the Lease too
    leases = {"edge-0": _lease("w0-new", now)}
    assert st.expired_ranks(body, now, ttl, timeout, leases.get) == {0: st.CLAIM_EXPIRED}
    assert st.claim_deadline(st.current_claims(body)[0], ttl, leases["edge-0"]) is None


def test_worker_outcomes() -> None:
    body = placed()
    body = apply_merge(body, st.claim_patch(body, attempt=1, rank=0, holder="w0", now=T0), "12")
    started = T0 + timedelta(seconds=1)
    body = apply_merge(body, st.started_patch(body, attempt=1, now=started), "13")
    assert st.phase_of(body) == st.RUNNING and body["status"]["timings"]["waitMillis"] == 1678
    assert st.started_patch(body, attempt=1, now=started) is None
    failed = st.attempt_failed_patch(body, attempt=1, reason=st.OUT_OF_MEMORY, message="oom", now=started)
    assert failed["status"]["failure"] == {
        "attempt": 1,
        "reason": "OutOfMemory",
        "message": "oom",
        "retryable": True,
    }
    failed_body = apply_merge(body, failed, "14")
    assert st.current_failure(failed_body)["reason"] == st.OUT_OF_MEMORY
    assert st.attempt_failed_patch(failed_body, attempt=1, reason="X", message="", now=started) is None
    result = st.TaskResult("file:///out/t1.png", "ab" * 32, 1234, seed=7)
    done = apply_merge(
        body, st.succeeded_patch(body, attempt=1, result=result, now=T0 + timedelta(seconds=3)), "15"
    )
    assert st.is_terminal(done) and done["status"]["timings"]["runMillis"] == 2000
    assert cond.condition_is(done["status"]["conditions"], cond.SUCCEEDED, cond.TRUE)
    with pytest.raises(st.ClaimRejected, match="Succeeded"):
        st.claim_patch(done, attempt=1, rank=1, holder="w1", now=T0)


def test_replacement_clears_claims_and_older_failures_are_history() -> None:
    body = placed()
    body = apply_merge(body, st.claim_patch(body, attempt=1, rank=0, holder="w0", now=T0), "12")
    body = apply_merge(
        body, st.attempt_failed_patch(body, attempt=1, reason=st.WORKER_ERROR, message="x", now=T0), "13"
    )
    body = apply_merge(body, st.placement_patch(body, record(2), T0, (cond.TRUE, "MetricsFresh", "")), "14")
    assert st.current_claims(body) == {} and st.current_failure(body) is None
    assert body["status"]["attempts"] == 2


def test_operator_failure_and_release() -> None:
    failed = apply_merge(task(), st.failed_patch(task(), st.UNKNOWN_MODEL, "no model x", T0), "11")
    assert st.phase_of(failed) == st.FAILED and failed["status"]["failure"]["attempt"] == 0
    assert cond.condition_is(failed["status"]["conditions"], cond.SCHEDULED, cond.FALSE)
    body = placed()
    body = apply_merge(body, st.claim_patch(body, attempt=1, rank=0, holder="w0", now=T0), "12")
    released = st.release_patch(body, attempt=1, rank=0, holder="w0")
    assert released is not None and released["status"]["claims"] == []
    assert st.release_patch(body, attempt=1, rank=0, holder="other") is None


def test_unschedulable_is_written_once_per_reason() -> None:
    patch = st.unschedulable_patch(task(), "NoReadyNodes", "none", T0)
    body = apply_merge(task(), patch, "11")
    assert st.unschedulable_patch(body, "NoReadyNodes", "still none", T0) is None
    assert st.unschedulable_patch(body, "UnsupportedSize", "", T0) is not None


def test_guarded_update_retries_conflicts_only() -> None:
    class Conflict(Exception):
        pass

    reads: list[int] = []
    writes: list[dict] = []

    def read() -> dict:
        reads.append(1)
        return task(rv=str(len(reads)))

    def write(patch: dict) -> dict:
        writes.append(patch)
        if len(writes) < 3:
            raise Conflict()
        return {"ok": patch["metadata"]["resourceVersion"]}

    def build(body: dict) -> dict:
        return st.placement_patch(body, record(), T0, (cond.TRUE, "x", ""))

    out = st.guarded_update(read, build, write, lambda e: isinstance(e, Conflict))
    assert out == {"ok": "3"} and len(reads) == 3
    with pytest.raises(ValueError):
        st.guarded_update(read, build, lambda p: (_ for _ in ()).throw(ValueError()), lambda e: False)


def test_time_round_trip() -> None:
    assert parse_time(format_time(T0)) == T0
    assert parse_time("2026-01-02T03:04:05Z") == T0.replace(microsecond=0)
