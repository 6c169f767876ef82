"""Task helpers for the operator's end-to-end tests (kubectl against the local control plane)."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aigc_operator.devcluster import LocalCluster
from aigc_operator.devharness import wait_for

__all__ = ["create_tasks", "events_for", "list_tasks", "task_doc", "wait_for"]  # wait_for: test_chart.py


def task_doc(name: str, namespace: str, model: str = "sd-turbo", **spec: Any) -> dict[str, Any]:
    fields = {"model": model, "prompt": f"e2e {name}", **spec}
    if "steps" not in fields and "minSteps" not in fields:
        fields["steps"] = 4
    return {
        "apiVersion": "aigc.edge.io/v1alpha1",
        "kind": "AIGCTask",
        "metadata": {"name": name, "namespace": namespace},
        "spec": fields,
    }


def create_tasks(cluster: LocalCluster, docs: list[dict[str, Any]]) -> None:
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs))


def list_tasks(cluster: LocalCluster, namespace: str) -> dict[str, dict[str, Any]]:
    out = json.loads(cluster.kubectl("get", "aigctasks", "-n", namespace, "-o", "json").stdout)
    return {item["metadata"]["name"]: item for item in out["items"]}


def events_for(cluster: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    return json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
