"""The model catalog from a ConfigMap (`--catalog-configmap`); files are read by aigc_api.catalog.

Every pipeline kind the worker builds (sd3-medium included) is in aigc_api.catalog.PIPELINE_KINDS,
so the format and its checks have one home.
"""

from __future__ import annotations

import yaml
from aigc_api.catalog import CONFIGMAP_KEY, CatalogError, ModelCatalog, parse_catalog


def load_configmap_catalog(api_client: object, namespace: str, name: str) -> ModelCatalog:
    """The catalog under CONFIGMAP_KEY; CatalogError names the ConfigMap and what is wrong."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    where = f"ConfigMap {namespace}/{name}"
    try:
        config_map = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        raise CatalogError(f"{where}: cannot be read ({exc.status} {exc.reason})") from None
    text = (config_map.data or {}).get(CONFIGMAP_KEY)
    if text is None:
        raise CatalogError(f"{where}: no {CONFIGMAP_KEY} key")
    try:
        return parse_catalog(text)
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def catalog_yaml(entries: list[dict[str, object]]) -> str:
    return yaml.safe_dump({"models": entries}, sort_keys=False)
