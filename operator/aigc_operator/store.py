"""In-memory views fed by watch events: AIGCTasks (with the pending queue) and Nodes.

The API server is the truth; these are caches that may lag. Writes the operator made itself are
folded in from the server's response, and an older watch event never overwrites a newer object.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aigc_api.clock import parse_time
from aigc_api.spec import task_id
from aigc_api.status import current_claims, is_terminal, parse_placement
from aigc_policy.snapshot import Resident


def _rv(body: dict[str, Any]) -> int | None:
    # etcd resourceVersions are increasing integers; anything else is accepted as newest.
    text = body.get("metadata", {}).get("resourceVersion", "")
    return int(text) if text.isdigit() else None


def _without_managed_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The body minus metadata.managedFields: server-side-apply bookkeeping nobody here reads,
    often the largest part of a small object, and kept for every task in the cluster."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


@dataclass(frozen=True, slots=True)
class PlacedLoad:
    """What a placed task costs its nodes, parsed once per object version."""

    nodes: tuple[str, ...]
    model: str
    service_s: float
    decided_at: float  # epoch s
    claimed_ranks: frozenset[int]
    # What it leaves loaded on its nodes; derived once here because every batch's view reads it.
    resident: Resident = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resident", _resident(self.model, tuple(sorted(self.nodes))))


@lru_cache(maxsize=4096)
def _resident(model: str, group: tuple[str, ...]) -> Resident:
    """One shared object per (model, group): the view's dict operations then match by identity."""
    return Resident(model, group)


def placed_load(body: dict[str, Any]) -> PlacedLoad | None:
    placement = parse_placement(body)
    if placement is None:
        return None
    return PlacedLoad(
        placement.nodes,
        (body.get("spec") or {}).get("model", ""),
        placement.estimated_service_millis / 1000,
        placement.decision_time.timestamp(),
        frozenset(current_claims(body)),
    )


class TaskStore:
    def __init__(self) -> None:
        self._bodies: dict[str, dict[str, Any]] = {}  # tasks not finished yet
        # Finished tasks keep only their resourceVersion, to order later events: they stay in the
        # cluster until someone deletes them, and nothing here reads their bodies again.
        self._finished: dict[str, int | None] = {}
        self._pending: dict[str, float] = {}  # key -> arrival (epoch s)
        self._replace_reason: dict[str, str] = {}  # key -> why the next attempt is needed
        self._busy: set[str] = set()  # keys with a write in flight
        self._due: dict[str, float] = {}  # placed, active key -> epoch s when it needs a review
        # (due, key) min-heap over _due, so a review touches only what is due, not every placed
        # task; entries whose due no longer matches _due are stale and skipped.
        self._due_heap: list[tuple[float, str]] = []
        self._loads: dict[str, PlacedLoad] = {}  # placed, active key -> its load
        self._deferred: dict[str, float] = {}  # pending key -> epoch s before which it is skipped
        self._held: dict[str, PlacedLoad] = {}  # decided, write in flight: counts as load already
        # First sight of a pending task (monotonic s): creationTimestamp has only 1 s resolution.
        self._first_seen: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._bodies) + len(self._finished)

    def observe(self, body: dict[str, Any]) -> bool:
        """Fold in an object version; False if it is older than what is known."""
        key = task_id(body)
        if not self._is_newest(key, body):
            return False
        if is_terminal(body):
            self._bodies.pop(key, None)
            self._finished[key] = _rv(body)
            self._pending.pop(key, None)
            self._replace_reason.pop(key, None)
            self._due.pop(key, None)
            self._loads.pop(key, None)
            return True
        self._finished.pop(key, None)
        body = _without_managed_fields(body)
        self._bodies[key] = body
        load = placed_load(body)
        if load is None:
            self._enqueue(key, body)
        else:
            if key not in self._replace_reason:
                self._pending.pop(key, None)  # placed by an earlier operator run
            self._schedule_review(key, 0.0)  # changed: review it now
            self._loads[key] = load
        return True

    def _is_newest(self, key: str, body: dict[str, Any]) -> bool:
        if key in self._finished:
            known = self._finished[key]
        elif key in self._bodies:
            known = _rv(self._bodies[key])
        else:
            return True
        new = _rv(body)
        return new is None or known is None or new >= known

    def forget(self, key: str) -> None:
        self._bodies.pop(key, None)
        self._finished.pop(key, None)
        self._pending.pop(key, None)
        self._replace_reason.pop(key, None)
        self._due.pop(key, None)
        self._loads.pop(key, None)
        self._deferred.pop(key, None)
        self._first_seen.pop(key, None)

    def first_seen(self, key: str) -> float | None:
        return self._first_seen.get(key)

    def get(self, key: str) -> dict[str, Any] | None:
        """The latest body of an unfinished task (None once it finished, or if unknown)."""
        return self._bodies.get(key)

    def _enqueue(self, key: str, body: dict[str, Any]) -> None:
        self._first_seen.setdefault(key, time.monotonic())
        if key not in self._pending:
            created = parse_time(body["metadata"].get("creationTimestamp"))
            self._pending[key] = created.timestamp() if created else 0.0

    def request_replacement(self, key: str, reason: str) -> None:
        """Queue a placed task for its next attempt."""
        body = self._bodies.get(key)
        if body is not None and not is_terminal(body):
            self._replace_reason[key] = reason
            self._enqueue(key, body)

    def replacement_reason(self, key: str) -> str | None:
        return self._replace_reason.get(key)

    def _takeable(self, now: float) -> Iterator[tuple[float, str]]:
        for key, arrival in self._pending.items():
            if key not in self._busy and self._deferred.get(key, 0.0) <= now:
                yield arrival, key

    def take_pending(self, limit: int, now: float) -> list[str]:
        """The oldest pending keys not deferred and without a write in flight; they stay pending
        until `done`."""
        keys = [key for _, key in heapq.nsmallest(limit, self._takeable(now))]
        self._busy.update(keys)
        return keys

    def has_takeable(self, now: float) -> bool:
        return next(self._takeable(now), None) is not None

    def done(self, key: str, placed: bool, defer_until: float = 0.0) -> None:
        """Release a key taken by `take_pending`; `placed` drops it from the queue, `defer_until`
        keeps an unplaceable one from blocking the head of the queue."""
        self._busy.discard(key)
        if placed:
            self._pending.pop(key, None)
            self._replace_reason.pop(key, None)
            self._deferred.pop(key, None)
            self._first_seen.pop(key, None)
        elif defer_until:
            self._deferred[key] = defer_until

    def clear_deferrals(self) -> None:
        """Capacity changed (node or worker): unplaceable tasks get another chance."""
        self._deferred.clear()

    def is_pending(self, key: str) -> bool:
        return key in self._pending

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def due_for_review(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """Placed, active tasks whose review time has come and that are not queued already."""
        heap, due_now, seen = self._due_heap, [], set()
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if self._due.get(key) == due and key not in seen:
                seen.add(key)
                due_now.append((due, key))
        for entry in due_now:  # still due until the review reschedules or settles them
            heapq.heappush(heap, entry)
        return [
            (key, self._bodies[key]) for _, key in due_now if key not in self._pending and key not in self._busy
        ]

    def set_review(self, key: str, due: float) -> None:
        if key in self._due:
            self._schedule_review(key, due)

    def review_all_now(self) -> None:
        """A node changed: every placed task may be affected."""
        for key in self._due:
            self._schedule_review(key, 0.0)

    def _schedule_review(self, key: str, due: float) -> None:
        self._due[key] = due
        heapq.heappush(self._due_heap, (due, key))

    def placed_loads(self) -> Iterator[PlacedLoad]:
        """Loads of non-terminal placed tasks not queued for a new attempt, and of decisions
        whose write is still in flight."""
        for key, load in self._loads.items():
            if key not in self._pending:
                yield load
        yield from self._held.values()

    def hold(self, key: str, load: PlacedLoad) -> None:
        self._held[key] = load

    def unhold(self, key: str) -> None:
        self._held.pop(key, None)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    gpu_class: str
    ready: bool
    schedulable: bool

    @property
    def usable(self) -> bool:
        return self.ready and self.schedulable


def node_info(body: dict[str, Any], class_label: str) -> NodeInfo:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
    )
    return NodeInfo(
        name=meta["name"],
        gpu_class=(meta.get("labels") or {}).get(class_label, ""),
        ready=ready,
        schedulable=not spec.get("unschedulable", False),
    )


class NodeStore:
    """GPU nodes only (selected by label); nodes that lose the label are dropped."""

    def __init__(self, gpu_label: tuple[str, str], class_label: str) -> None:
        self._label = gpu_label
        self._class_label = class_label
        self._nodes: dict[str, NodeInfo] = {}

    def observe(self, body: dict[str, Any], deleted: bool = False) -> None:
        name = body["metadata"]["name"]
        labels = body["metadata"].get("labels") or {}
        key, value = self._label
        if deleted or labels.get(key) != value:
            self._nodes.pop(name, None)
        else:
            self._nodes[name] = node_info(body, self._class_label)

    def usable(self) -> list[NodeInfo]:
        return sorted((n for n in self._nodes.values() if n.usable and n.gpu_class), key=lambda n: n.name)

    def is_usable(self, name: str) -> bool:
        node = self._nodes.get(name)
        return node is not None and node.usable
