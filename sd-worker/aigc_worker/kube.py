"""The few API-server calls the worker makes (AIGCTask status, its Lease), behind one small class.

Tests substitute an in-memory fake with the same methods; the patch bodies themselves always come
from aigc_api.status / aigc_api.lease so the format has one home.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aigc_api import GROUP, PLURAL, VERSION
from aigc_api.api_errors import is_not_found

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeTasks:
    def __init__(self, api_client: Any, namespace: str | None) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.namespace = namespace  # None: every namespace

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None, namespace: str | None) -> KubeTasks:
        from kubernetes import client, config

        if kubeconfig:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        else:
            config.load_incluster_config()
            api_client = client.ApiClient()
        return cls(api_client, namespace)

    def list(self) -> tuple[list[dict[str, Any]], str]:
        if self.namespace:
            listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        else:
            listing = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return listing.get("items", []), listing["metadata"]["resourceVersion"]

    def watch(self, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        from kubernetes import watch

        if self.namespace:
            call, args = self.custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, PLURAL)
        else:
            call, args = self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        stream = watch.Watch().stream(
            call,
            *args,
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            allow_watch_bookmarks=True,
        )
        for event in stream:
            yield event["type"], event["object"]

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name)

    def merge_patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, patch, _content_type=MERGE_PATCH
        )

    def json_patch_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, ops, _content_type=JSON_PATCH
        )

    def upsert_lease(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        try:
            self.coordination.patch_namespaced_lease(
                name,
                namespace,
                {"metadata": {"annotations": body["metadata"]["annotations"]}, "spec": body["spec"]},
                _content_type=MERGE_PATCH,
            )
        except Exception as exc:
            if not is_not_found(exc):
                raise
            self.coordination.create_namespaced_lease(namespace, body)
