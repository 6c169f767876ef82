"""An in-memory stand-in for the operator's KubeApi: merge patches with resourceVersion
preconditions, like the API server's status subresource."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime
from typing import Any

from aigc_api.lease import WorkerStatus
from kubernetes.client.exceptions import ApiException

_rv = itertools.count(100)


def make_task(
    name: str, model: str = "sd15", namespace: str = "ns", created: str = "2026-01-02T03:04:05Z", **spec: Any
) -> dict:
    body_spec = {"model": model, "prompt": "x", "steps": 20, **spec}
    return {
        "apiVersion": "aigc.edge.io/v1alpha1",
        "kind": "AIGCTask",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": str(next(_rv)),
            "creationTimestamp": created,
        },
        "spec": body_spec,
    }


def make_node(name: str, gpu_class: str, ready: bool = True) -> dict:
    return {
        "metadata": {
            "name": name,
            "labels": {"aigc.edge.io/gpu-node": "true", "aigc.edge.io/gpu-class": gpu_class},
        },
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.patches: list[tuple[str, dict]] = []
        self.events: list[tuple[str, str, str]] = []
        self.workers: dict[str, WorkerStatus] = {}
        self.conflict_next: set[str] = set()  # keys whose next patch sees a concurrent writer

    def add(self, body: dict) -> dict:
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        self.objects[key] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def get_task(self, namespace: str, name: str) -> dict:
        key = f"{namespace}/{name}"
        if key not in self.objects:
            raise ApiException(status=404)
        return copy.deepcopy(self.objects[key])

    def patch_task_status(self, namespace: str, name: str, patch: dict) -> dict:
        key = f"{namespace}/{name}"
        if key not in self.objects:
            raise ApiException(status=404)
        current = self.objects[key]
        if key in self.conflict_next:
            self.conflict_next.discard(key)
            current["metadata"]["resourceVersion"] = str(next(_rv))
        wanted = patch.get("metadata", {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        status = dict(current.get("status") or {})
        for field, value in patch["status"].items():
            if value is None:
                status.pop(field, None)
            else:
                status[field] = copy.deepcopy(value)
        current["status"] = status
        current["metadata"]["resourceVersion"] = str(next(_rv))
        self.patches.append((key, copy.deepcopy(patch)))
        return copy.deepcopy(current)

    def worker_statuses(self, namespace: str) -> dict[str, WorkerStatus]:
        return dict(self.workers)

    def post_event(self, obj: dict, event_type: str, reason: str, message: str, now: datetime) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
