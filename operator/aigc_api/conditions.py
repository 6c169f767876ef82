"""Status conditions in the Kubernetes shape: {type, status, reason, message, lastTransitionTime,
observedGeneration}. `lastTransitionTime` changes only when `status` changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aigc_api.clock import format_time

# Condition types.
SCHEDULED = "Scheduled"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
METRICS_AVAILABLE = "MetricsAvailable"

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"


def find_condition(conditions: Sequence[dict[str, Any]] | None, cond_type: str) -> dict[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == cond_type:
            return cond
    return None


def condition_is(conditions: Sequence[dict[str, Any]] | None, cond_type: str, status: str) -> bool:
    cond = find_condition(conditions, cond_type)
    return cond is not None and cond.get("status") == status


def set_condition(
    conditions: Sequence[dict[str, Any]] | None,
    cond_type: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new condition list with `cond_type` set; other conditions are kept in their order."""
    previous = find_condition(conditions, cond_type)
    changed = previous is None or previous.get("status") != status
    new = {
        "type": cond_type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(now) if changed else previous["lastTransitionTime"],
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    result = [new if c.get("type") == cond_type else dict(c) for c in conditions or ()]
    if previous is None:
        result.append(new)
    return result
