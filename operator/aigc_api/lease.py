"""Worker status published as a coordination.k8s.io/v1 Lease (the worker writes, the operator reads).

One Lease per GPU node, named `aigc-worker-<node>`, in the operator's namespace:

    metadata:
      name: aigc-worker-<node>
      labels: {aigc.edge.io/worker: "true", aigc.edge.io/node: <node>}
      annotations:
        aigc.edge.io/address: "<host>:<port>"                 # metrics + rendezvous host
        aigc.edge.io/resident-models: '[{"model": "sd-turbo", "group": ["edge-0"]}]'  # LRU, newest last
        aigc.edge.io/free-at: "2026-01-02T03:04:05.678Z"      # when its accepted work drains
        aigc.edge.io/queue-length: "2"                         # ranks accepted and not finished
    spec:
      holderIdentity: <worker pod name>
      leaseDurationSeconds: 15      # ~3x the worker's renewal period (`lease_seconds_for`)
      renewTime: <MicroTime>        # the worker renews every period, well within leaseDurationSeconds
      acquireTime: <MicroTime>

A worker is alive while renewTime + leaseDurationSeconds (capped by the operator's heartbeat TTL)
is in the future. Its claims on AIGCTasks live exactly as long (aigc_api.status.claim_deadline).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aigc_policy.snapshot import Resident

from aigc_api import GROUP
from aigc_api.clock import format_micro_time, format_time, parse_time
from aigc_api.status import lease_expiry

LEASE_PREFIX = "aigc-worker-"
LABEL_WORKER = f"{GROUP}/worker"
LABEL_NODE = f"{GROUP}/node"
ANNOTATION_ADDRESS = f"{GROUP}/address"
ANNOTATION_RESIDENT = f"{GROUP}/resident-models"
ANNOTATION_FREE_AT = f"{GROUP}/free-at"
ANNOTATION_QUEUE = f"{GROUP}/queue-length"
DEFAULT_LEASE_SECONDS = 30  # a Lease that does not say (older workers published a fixed 30 s)
LEASE_PERIODS = 3  # a worker's Lease outlives this many missed renewals, like a kubelet's node Lease


def lease_name(node: str) -> str:
    return f"{LEASE_PREFIX}{node}"


def lease_seconds_for(renew_period_s: float) -> int:
    """leaseDurationSeconds for a worker renewing every `renew_period_s`: LEASE_PERIODS periods."""
    return max(1, math.ceil(LEASE_PERIODS * renew_period_s))


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    node: str
    holder: str
    address: str
    renew_time: datetime
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    resident: tuple[Resident, ...] = field(default_factory=tuple)
    free_at: datetime | None = None
    queue_length: int = 0

    def alive(self, now: datetime, max_ttl: timedelta | None = None) -> bool:
        """Fresh at `now`; `max_ttl` caps leaseDurationSeconds (the operator's heartbeat TTL)."""
        return now < lease_expiry(self, max_ttl)


def encode_resident(resident: tuple[Resident, ...] | list[Resident]) -> str:
    return json.dumps([{"model": r.model, "group": list(r.group)} for r in resident], separators=(",", ":"))


def decode_resident(text: str | None) -> tuple[Resident, ...]:
    if not text:
        return ()
    return tuple(
        Resident(model=item["model"], group=tuple(item.get("group") or ())) for item in json.loads(text)
    )


def to_lease_body(
    status: WorkerStatus, namespace: str, acquire_time: datetime | None = None
) -> dict[str, Any]:
    """A full Lease object for create/replace; for renewals patch `metadata.annotations` and `spec`."""
    annotations = {
        ANNOTATION_ADDRESS: status.address,
        ANNOTATION_RESIDENT: encode_resident(status.resident),
        ANNOTATION_QUEUE: str(status.queue_length),
    }
    if status.free_at is not None:
        annotations[ANNOTATION_FREE_AT] = format_time(status.free_at)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(status.node),
            "namespace": namespace,
            "labels": {LABEL_WORKER: "true", LABEL_NODE: status.node},
            "annotations": annotations,
        },
        "spec": {
            "holderIdentity": status.holder,
            "leaseDurationSeconds": status.lease_seconds,
            "renewTime": format_micro_time(status.renew_time),
            "acquireTime": format_micro_time(acquire_time or status.renew_time),
        },
    }


def from_lease_body(lease: dict[str, Any]) -> WorkerStatus | None:
    """Parse a Lease (dict as the API returns it); None if it is not a worker Lease or is unusable."""
    meta = lease.get("metadata") or {}
    name = meta.get("name") or ""
    labels = meta.get("labels") or {}
    if not name.startswith(LEASE_PREFIX):
        return None
    spec = lease.get("spec") or {}
    renew = parse_time(spec.get("renewTime"))
    if renew is None:
        return None
    annotations = meta.get("annotations") or {}
    try:
        resident = decode_resident(annotations.get(ANNOTATION_RESIDENT))
        queue_length = int(annotations.get(ANNOTATION_QUEUE) or 0)
        free_at = parse_time(annotations.get(ANNOTATION_FREE_AT))
    except (ValueError, KeyError, TypeError):
        # A half-written or foreign annotation: keep the worker alive, ignore its load report.
        resident, queue_length, free_at = (), 0, None
    return WorkerStatus(
        node=labels.get(LABEL_NODE) or name.removeprefix(LEASE_PREFIX),
        holder=spec.get("holderIdentity") or "",
        address=annotations.get(ANNOTATION_ADDRESS, ""),
        renew_time=renew,
        lease_seconds=int(spec.get("leaseDurationSeconds") or DEFAULT_LEASE_SECONDS),
        resident=resident,
        free_at=free_at,
        queue_length=queue_length,
    )
