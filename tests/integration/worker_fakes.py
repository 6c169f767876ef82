"""Shared pieces of the worker tests: an in-memory AIGCTask API and task/placement builders.

The fake keeps the two guarantees the claim protocol relies on: merge patches carrying a stale
metadata.resourceVersion fail with 409, and JSON Patch `test` operations fail with 422.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from datetime import UTC, datetime
from typing import Any

from aigc_api import status as st


class ApiError(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"{status} {message}")
        self.status = status


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeTasks:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.leases: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, Any]] = []
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def create(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": "aigc.edge.io/v1alpha1",
            "kind": "AIGCTask",
            "metadata": {
                "namespace": namespace,
                "name": name,
                "uid": f"uid-{name}",
                "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "resourceVersion": str(next(self._versions)),
            },
            "spec": spec,
        }
        self.objects[(namespace, name)] = body
        return copy.deepcopy(body)

    def place(self, namespace: str, name: str, nodes: tuple[str, ...], steps: int, attempt: int = 1) -> None:
        record = st.PlacementRecord(attempt, nodes, steps, "test", "v0", datetime.now(UTC), 0, 1000)
        body = self.get(namespace, name)
        self.merge_patch_status(
            namespace, name, st.placement_patch(body, record, datetime.now(UTC), ("True", "Fresh", ""))
        )

    # ------------------------------------------------------------ the TaskApi the worker uses

    def list(self) -> tuple[list[dict[str, Any]], str]:
        with self._lock:
            return [copy.deepcopy(b) for b in self.objects.values()], str(next(self._versions))

    def watch(self, resource_version: str, timeout_s: int):  # noqa: ANN201 - no events: the worker relists
        time.sleep(0.05)
        return iter(())

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            if (namespace, name) not in self.objects:
                raise ApiError(404, name)
            return copy.deepcopy(self.objects[(namespace, name)])

    def merge_patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            body = self.objects[(namespace, name)]
            expected = (patch.get("metadata") or {}).get("resourceVersion")
            if expected is not None and expected != body["metadata"]["resourceVersion"]:
                raise ApiError(409, "conflict")
            _merge(body, {"status": patch.get("status") or {}})
            body["metadata"]["resourceVersion"] = str(next(self._versions))
            self.writes.append(("merge", copy.deepcopy(patch)))
            return copy.deepcopy(body)

    def json_patch_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            body = self.objects[(namespace, name)]
            for op in ops:
                *parents, leaf = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
                node: Any = body
                try:
                    for part in parents:
                        node = node[part]
                    if op["op"] == "test" and node[leaf] != op["value"]:
                        raise ApiError(422, f"test failed at {op['path']}")
                except (KeyError, IndexError) as exc:
                    raise ApiError(422, f"no {op['path']}") from exc
            for op in ops:
                if op["op"] == "replace":
                    *parents, leaf = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
                    node = body
                    for part in parents:
                        node = node[part]
                    node[leaf] = op["value"]
            body["metadata"]["resourceVersion"] = str(next(self._versions))
            return copy.deepcopy(body)

    def upsert_lease(self, namespace: str, body: dict[str, Any]) -> None:
        self.leases[body["metadata"]["name"]] = copy.deepcopy(body)


def task_spec(
    model: str, *, steps: int = 4, size: int = 64, seed: int = 7, guidance: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": model,
        "prompt": "a photo of the cat",
        "width": size,
        "height": size,
        "steps": steps,
        "seed": seed,
    }
    if guidance is not None:
        spec["guidance"] = guidance
    return spec


def wait_for(predicate, timeout_s: float = 60.0, interval_s: float = 0.1):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError("condition not met in time")
