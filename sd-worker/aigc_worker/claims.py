"""This worker's writes to AIGCTask status: claim, heartbeat, release, Running, Succeeded, Failed.

Every write is built by aigc_api.status and guarded (resourceVersion, or JSON Patch `test`), so a
claim can never be taken twice and a stale worker cannot overwrite a newer attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from aigc_api import status as st
from aigc_api.api_errors import is_conflict
from aigc_api.clock import utcnow

log = logging.getLogger(__name__)


class TaskApi(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def merge_patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...

    def json_patch_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]: ...


class Claims:
    def __init__(self, api: TaskApi, holder: str, clock: Callable[[], datetime] = utcnow) -> None:
        self.api = api
        self.holder = holder
        self.clock = clock

    def _update(
        self, namespace: str, name: str, build: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        return st.guarded_update(
            read=lambda: self.api.get(namespace, name),
            build=build,
            write=lambda patch: self.api.merge_patch_status(namespace, name, patch),
            is_conflict=is_conflict,
        )

    def claim(self, namespace: str, name: str, attempt: int, rank: int, rendezvous: str | None) -> bool:
        """True if this worker holds the rank afterwards (newly or already)."""
        try:
            self._update(
                namespace,
                name,
                lambda body: st.claim_patch(
                    body,
                    attempt=attempt,
                    rank=rank,
                    holder=self.holder,
                    now=self.clock(),
                    rendezvous=rendezvous,
                ),
            )
        except st.ClaimRejected as exc:
            log.info("not claiming rank %d of %s/%s: %s", rank, namespace, name, exc)
            return False
        return True

    def heartbeat(self, namespace: str, name: str, attempt: int, rank: int) -> bool:
        """Renew; False when the claim is gone (re-placed, taken over, task deleted)."""
        try:
            body = self.api.get(namespace, name)
            ops = st.heartbeat_patch(body, attempt=attempt, rank=rank, holder=self.holder, now=self.clock())
            self.api.json_patch_status(namespace, name, ops)
        except st.ClaimRejected:
            return False
        except Exception as exc:
            # 422: a `test` failed, the claim moved or changed hands; 404: the task is gone.
            if getattr(exc, "status", None) in (404, 422):
                return False
            raise
        return True

    def release(self, namespace: str, name: str, attempt: int, rank: int) -> None:
        self._update(
            namespace,
            name,
            lambda body: st.release_patch(body, attempt=attempt, rank=rank, holder=self.holder),
        )

    def started(self, namespace: str, name: str, attempt: int) -> None:
        self._update(namespace, name, lambda body: st.started_patch(body, attempt=attempt, now=self.clock()))

    def succeeded(self, namespace: str, name: str, attempt: int, result: st.TaskResult) -> None:
        self._update(
            namespace,
            name,
            lambda body: st.succeeded_patch(body, attempt=attempt, result=result, now=self.clock()),
        )

    def failed(
        self,
        namespace: str,
        name: str,
        attempt: int,
        reason: str,
        message: str,
        retryable: bool | None = None,
    ) -> None:
        try:
            self._update(
                namespace,
                name,
                lambda body: st.attempt_failed_patch(
                    body,
                    attempt=attempt,
                    reason=reason,
                    message=message[:1000],
                    now=self.clock(),
                    retryable=retryable,
                ),
            )
        except st.ClaimRejected as exc:
            log.info("attempt %d of %s/%s already over: %s", attempt, namespace, name, exc)
