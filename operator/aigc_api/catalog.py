"""The model catalog: which models exist, where their weights come from, how much memory they need.

A YAML file (mounted from the `aigc-model-catalog` ConfigMap, key `catalog.yaml`):

    models:
      - name: sd-turbo                  # what AIGCTask.spec.model refers to (DNS-1123 label)
        source: stabilityai/sd-turbo    # Hugging Face repo id, or file:// / https:// URI
        pipeline: sd-turbo              # pipeline kind the worker builds (see PIPELINE_KINDS)
        vramGb: 3.5                     # GPU memory the pipeline needs on one member
        revision: main                  # optional: source revision

The operator uses it to fail unknown models fast; the worker to load and budget models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aigc_policy.errors import yaml_problem

PIPELINE_KINDS = ("sd15", "sd21", "sdxl", "sd-turbo", "sdxl-turbo", "tiny-sd", "sd3-medium")
CONFIGMAP_KEY = "catalog.yaml"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the entry and field."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    source: str
    pipeline: str
    vram_gb: float
    revision: str | None = None


class ModelCatalog:
    def __init__(self, entries: list[ModelEntry]) -> None:
        self._by_name = {e.name: e for e in entries}

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> ModelEntry | None:
        return self._by_name.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)


def _entry(raw: Any, index: int) -> ModelEntry:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise CatalogError(f"{where}.name: {name!r} is not a lowercase DNS-1123 name")
    source = raw.get("source")
    if not isinstance(source, str) or not source:
        raise CatalogError(f"{where}.source: required")
    pipeline = raw.get("pipeline")
    if pipeline not in PIPELINE_KINDS:
        raise CatalogError(f"{where}.pipeline: {pipeline!r} is not one of {', '.join(PIPELINE_KINDS)}")
    vram = raw.get("vramGb")
    if isinstance(vram, bool) or not isinstance(vram, int | float) or vram <= 0:
        raise CatalogError(f"{where}.vramGb: must be a positive number")
    revision = raw.get("revision")
    return ModelEntry(name, source, pipeline, float(vram), None if revision is None else str(revision))


def parse_catalog(text: str) -> ModelCatalog:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(yaml_problem(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError("top level must be a mapping with a 'models' list")
    entries = [_entry(raw, i) for i, raw in enumerate(data["models"])]
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CatalogError(f"duplicate model names: {', '.join(duplicates)}")
    return ModelCatalog(entries)


def load_catalog(path: Path) -> ModelCatalog:
    """The catalog in a file; CatalogError names the file, OSError when it cannot be read."""
    try:
        return parse_catalog(path.read_text(encoding="utf-8"))
    except CatalogError as exc:
        raise CatalogError(f"{path}: {exc}") from None
