"""Blocking Kubernetes API calls the operator makes itself (run them in the API thread pool)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from aigc_api import GROUP, KIND, PLURAL, VERSION
from aigc_api.clock import format_time
from aigc_api.lease import LABEL_WORKER, WorkerStatus, from_lease_body
from kubernetes import client, config

COMPONENT = "aigc-edge-operator"


def load_kube_config() -> None:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class KubeApi:
    def __init__(self, pool_size: int) -> None:
        configuration = client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = pool_size
        self._api_client = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(self._api_client)
        self._core = client.CoreV1Api(self._api_client)
        self._coordination = client.CoordinationV1Api(self._api_client)

    def get_task(self, namespace: str, name: str) -> dict[str, Any]:
        return self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def patch_task_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch; a `metadata.resourceVersion` in it turns into a 409 precondition."""
        return self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )

    def worker_statuses(self, namespace: str) -> dict[str, WorkerStatus]:
        leases = self._coordination.list_namespaced_lease(namespace, label_selector=f"{LABEL_WORKER}=true")
        out: dict[str, WorkerStatus] = {}
        for lease in leases.items:
            status = from_lease_body(self._api_client.sanitize_for_serialization(lease))
            if status is not None:
                out[status.node] = status
        return out

    def post_event(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str, now: datetime
    ) -> None:
        """An Event about `obj` (an AIGCTask, or the operator's Pod: any object with metadata)."""
        meta = obj["metadata"]
        stamp = format_time(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": obj.get("kind", KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        # The response is not needed: skip the client's (slow) model deserialisation. Its body must
        # still be read off the socket before the connection goes back to the pool, or the next
        # request on it (e.g. a placement write) reads it as its status line (BadStatusLine).
        response = self._core.create_namespaced_event(meta["namespace"], body, _preload_content=False)
        response.drain_conn()
        response.release_conn()
