"""The worker's view of the model catalog: aigc_api.catalog, read from a file or the ConfigMap.

Every pipeline kind the worker builds (sd3-medium included) is in aigc_api.catalog.PIPELINE_KINDS,
so the format and its checks have one home.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from aigc_api.catalog import CONFIGMAP_KEY, ModelCatalog, load_catalog, parse_catalog


def parse_worker_catalog(text: str) -> ModelCatalog:
    return parse_catalog(text)


def load_worker_catalog(path: Path) -> ModelCatalog:
    return load_catalog(path)


def load_configmap_catalog(api_client: object, namespace: str, name: str) -> ModelCatalog:
    from kubernetes import client

    config_map = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    return parse_worker_catalog((config_map.data or {})[CONFIGMAP_KEY])


def catalog_yaml(entries: list[dict[str, object]]) -> str:
    return yaml.safe_dump({"models": entries}, sort_keys=False)
