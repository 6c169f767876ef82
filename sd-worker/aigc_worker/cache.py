"""Warm models: an LRU cache of loaded pipelines bounded by a device-memory budget.

The budget is counted in the catalog's declared `vramGb` per model, not in measured bytes:
that is the figure the scheduler plans with, so both sides agree on what fits.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aigc_api.catalog import ModelEntry

Model = TypeVar("Model")
HISTORY = 256  # load and eviction events kept for inspection


class ModelTooLarge(RuntimeError):
    """The model alone needs more memory than this worker's whole budget."""


@dataclass(frozen=True, slots=True)
class CacheEvent:
    model: str
    seconds: float  # load: time to load; eviction: how long it had been resident
    at: float  # wall clock (time.time) when it happened


class ModelCache(Generic[Model]):
    def __init__(
        self,
        budget_gb: float,
        load: Callable[[ModelEntry], Model],
        release: Callable[[Model], None] = lambda _model: None,
    ) -> None:
        self.budget_gb = budget_gb
        self._load = load
        self._release = release
        self._models: OrderedDict[str, tuple[ModelEntry, Model, float]] = OrderedDict()
        self.loads: deque[CacheEvent] = deque(maxlen=HISTORY)
        self.evictions: deque[CacheEvent] = deque(maxlen=HISTORY)

    @property
    def resident(self) -> list[str]:
        """Resident model names, least recently used first."""
        return list(self._models)

    @property
    def used_gb(self) -> float:
        return sum(entry.vram_gb for entry, _, _ in self._models.values())

    def is_resident(self, name: str) -> bool:
        return name in self._models

    def get(self, entry: ModelEntry) -> tuple[Model, float | None]:
        """The loaded model and its load time in seconds (None when it was already warm)."""
        if entry.name in self._models:
            self._models.move_to_end(entry.name)
            return self._models[entry.name][1], None
        if entry.vram_gb > self.budget_gb:
            raise ModelTooLarge(f"{entry.name} needs {entry.vram_gb} GB, the budget is {self.budget_gb} GB")
        while self._models and self.used_gb + entry.vram_gb > self.budget_gb:
            self.evict(next(iter(self._models)))
        start = time.perf_counter()
        model = self._load(entry)
        seconds = time.perf_counter() - start
        self._models[entry.name] = (entry, model, time.time())
        self.loads.append(CacheEvent(entry.name, seconds, time.time()))
        return model, seconds

    def evict(self, name: str) -> None:
        _, model, loaded_at = self._models.pop(name)
        self._release(model)
        now = time.time()
        self.evictions.append(CacheEvent(name, now - loaded_at, now))
