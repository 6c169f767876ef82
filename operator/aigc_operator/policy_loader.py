"""Load the configured policy; if it cannot be loaded, run on the fallback and say so.

A missing or corrupt policy file must not stop the operator: it schedules with the
deterministic fallback, reports the error in the health payload and posts a Warning Event.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import aigc_policy
from aigc_policy import policies
from aigc_policy.scheduler import Scheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    name: str
    version: str
    scheduler: Scheduler


@dataclass(frozen=True, slots=True)
class PolicySet:
    primary: LoadedPolicy | None
    fallback: LoadedPolicy
    error: str | None  # why the primary is unavailable

    def status(self) -> dict[str, str | None]:
        return {
            "policy": self.primary.name if self.primary else None,
            "policyVersion": self.primary.version if self.primary else None,
            "fallback": self.fallback.name,
            "error": self.error,
        }


def _version(spec: str) -> str:
    """The policy file's content hash, or the package version for built-in policies."""
    _, sep, arg = spec.partition(":")
    path = Path(arg) if sep else None
    if path is not None and path.is_file():
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return aigc_policy.__version__


def _load(spec: str) -> LoadedPolicy:
    scheduler = policies.make(spec)
    scheduler.reset(0)
    return LoadedPolicy(
        name=spec.partition(":")[0],
        version=getattr(scheduler, "version", None) or _version(spec),
        scheduler=scheduler,
    )


def load_policies(spec: str, fallback_spec: str) -> PolicySet:
    fallback = _load(fallback_spec)
    try:
        return PolicySet(_load(spec), fallback, None)
    except Exception as exc:  # unknown name, missing/corrupt ONNX file, schema mismatch
        message = f"policy {spec!r} unavailable: {type(exc).__name__}: {exc}"[:500]
        log.warning("%s; scheduling with fallback %r", message, fallback_spec)
        return PolicySet(None, fallback, message)
