"""The one interface every scheduler implements, heuristic or learned."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aigc_policy.placement import Placement
from aigc_policy.snapshot import ClusterSnapshot


@runtime_checkable
class Scheduler(Protocol):
    """Sees a snapshot, returns a placement or None (wait for the next event).

    `decide` must not mutate the snapshot: its tasks and nodes are the simulator's live objects.
    When `snap.has_future_events` is False, waiting would stall the cluster; the simulator then
    places the head task itself (earliest finish) and counts a forced decision.
    """

    name: str

    def reset(self, seed: int) -> None: ...

    def decide(self, snap: ClusterSnapshot) -> Placement | None: ...
