"""Claims survive a control-plane outage: Lease freshness counts from when the operator could read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aigc_api import status as st
from aigc_api.lease import WorkerStatus
from aigc_operator.runtime import renewed_no_earlier_than

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=10)


def _lease(renewed: datetime, holder: str = "w0") -> WorkerStatus:
    return WorkerStatus(node="edge-0", holder=holder, address="", renew_time=renewed, lease_seconds=6)


def _claim(holder: str = "w0") -> st.Claim:
    return st.Claim(attempt=1, rank=0, node="edge-0", holder=holder, heartbeat_time=T0)


def test_lease_renewed_before_the_operator_could_read_gets_a_full_period_from_then() -> None:
    recovered = T0 + timedelta(seconds=30)  # API server back after a 30 s outage
    seen = renewed_no_earlier_than({"edge-0": _lease(T0)}, recovered)["edge-0"]
    deadline = st.claim_deadline(_claim(), TTL, seen)
    assert deadline == recovered + timedelta(seconds=6)
    # Without the grace the same claim would already be dead when the operator looks again.
    assert st.claim_deadline(_claim(), TTL, _lease(T0)) < recovered


def test_fresh_leases_and_other_holders_are_left_alone() -> None:
    since = T0
    fresh = _lease(T0 + timedelta(seconds=5))
    assert renewed_no_earlier_than({"edge-0": fresh}, since)["edge-0"] is fresh
    restarted = renewed_no_earlier_than({"edge-0": _lease(T0 - timedelta(seconds=60), "w1")}, since)["edge-0"]
    assert st.claim_deadline(_claim("w0"), TTL, restarted) is None  # a new identity never keeps old claims
