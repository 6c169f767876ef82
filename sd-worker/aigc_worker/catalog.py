"""The worker's view of the model catalog: aigc_api.catalog plus kinds only the worker knows yet.

`sd3-medium` (reSD3-medium: SD3 without T5) is not in aigc_api.catalog.PIPELINE_KINDS; until it
is, its entries are validated by the shared parser under a stand-in kind and given their own kind
back, so the format and its checks keep one home. Delete WORKER_ONLY_KINDS once the shared list
has them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml
from aigc_api.catalog import CONFIGMAP_KEY, PIPELINE_KINDS, ModelCatalog, parse_catalog

WORKER_ONLY_KINDS = tuple(k for k in ("sd3-medium",) if k not in PIPELINE_KINDS)
_STAND_IN_KIND = "tiny-sd"


def parse_worker_catalog(text: str) -> ModelCatalog:
    data = yaml.safe_load(text) or {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not WORKER_ONLY_KINDS:
        return parse_catalog(text)
    own_kinds = {
        i: raw["pipeline"]
        for i, raw in enumerate(models)
        if isinstance(raw, dict) and raw.get("pipeline") in WORKER_ONLY_KINDS
    }
    stand_ins = [
        {**raw, "pipeline": _STAND_IN_KIND} if i in own_kinds else raw for i, raw in enumerate(models)
    ]
    shared = parse_catalog(yaml.safe_dump({"models": stand_ins}))
    return ModelCatalog([replace(e, pipeline=own_kinds.get(i, e.pipeline)) for i, e in enumerate(shared)])


def load_worker_catalog(path: Path) -> ModelCatalog:
    return parse_worker_catalog(path.read_text(encoding="utf-8"))


def load_configmap_catalog(api_client: object, namespace: str, name: str) -> ModelCatalog:
    from kubernetes import client

    config_map = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    return parse_worker_catalog((config_map.data or {})[CONFIGMAP_KEY])


def catalog_yaml(entries: list[dict[str, object]]) -> str:
    return yaml.safe_dump({"models": entries}, sort_keys=False)
