"""What an API-server failure means, for the operator and the worker alike.

Duck-typed on `.status` (kubernetes ApiException, and the in-memory fakes tests use), so this
module needs no client library.
"""

from __future__ import annotations


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def is_conflict(exc: Exception) -> bool:
    """409: the resourceVersion precondition failed; re-read and decide again."""
    return _status(exc) == 409


def is_not_found(exc: Exception) -> bool:
    return _status(exc) == 404


def is_transient(exc: Exception) -> bool:
    """Worth retrying: no answer at all, or one an API server gives while it (re)starts (403
    until its RBAC caches are warm, 429, 5xx). A TimeoutError (conflicts that kept coming) too."""
    status = _status(exc)
    return status is None or status in (403, 429) or status >= 500
