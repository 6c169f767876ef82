"""What a placed task needs next: nothing yet, a new attempt, or a terminal failure.

Pure functions over the task object, so the decision after a restart is the decision before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aigc_api import status as st

KEEP = "keep"
REPLACE = "replace"
FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Review:
    action: str  # KEEP | REPLACE | FAIL
    reason: str = ""
    message: str = ""
    next_check: datetime | None = None  # KEEP: when the task can next change without an event


def review(
    body: dict[str, Any],
    now: datetime,
    node_usable: Callable[[str], bool],
    heartbeat_ttl: timedelta,
    claim_timeout: timedelta,
    max_attempts: int,
    worker_lease: Callable[[str], st.WorkerLease | None] | None = None,
) -> Review:
    """`worker_lease(node)`: the operator's view of that node's worker Lease (claim liveness)."""
    placement = st.parse_placement(body)
    if placement is None or st.is_terminal(body):
        return Review(KEEP)
    failure = st.current_failure(body)
    if failure is not None:
        reason, message = failure.get("reason", st.WORKER_ERROR), failure.get("message", "")
        if not failure.get("retryable", False):
            return Review(FAIL, reason, f"attempt {placement.attempt}: {message}")
        return _retry(placement.attempt, max_attempts, reason, message)
    lost = [n for n in placement.nodes if not node_usable(n)]
    if lost:
        return _retry(
            placement.attempt, max_attempts, st.NODE_LOST, f"node(s) {','.join(sorted(set(lost)))} not ready"
        )
    expired = st.expired_ranks(body, now, heartbeat_ttl, claim_timeout, worker_lease)
    if expired:
        reason = st.CLAIM_EXPIRED if st.CLAIM_EXPIRED in expired.values() else st.CLAIM_TIMEOUT
        ranks = ",".join(str(r) for r in sorted(expired))
        return _retry(
            placement.attempt, max_attempts, reason, f"rank(s) {ranks} of attempt {placement.attempt}"
        )
    return Review(KEEP, next_check=st.next_expiry(body, heartbeat_ttl, claim_timeout, worker_lease))


def _retry(attempt: int, max_attempts: int, reason: str, message: str) -> Review:
    if attempt >= max_attempts:
        return Review(FAIL, st.MAX_ATTEMPTS_EXCEEDED, f"{attempt} attempt(s); last: {reason}: {message}")
    return Review(REPLACE, reason, message)
