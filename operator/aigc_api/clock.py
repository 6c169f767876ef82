"""RFC 3339 timestamps as the API server stores them (UTC, `Z` suffix).

Status times carry milliseconds so that heartbeats and sub-second scheduling latencies survive a
round trip; Lease times use the MicroTime layout (exactly six fractional digits) Kubernetes requires.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """Millisecond RFC 3339, e.g. 2026-01-02T03:04:05.678Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_micro_time(moment: datetime) -> str:
    """metav1.MicroTime layout, e.g. 2026-01-02T03:04:05.678901Z (Lease renewTime/acquireTime)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """Parse any RFC 3339 time the API server returns (with or without fraction); None passes through."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def millis_between(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))
