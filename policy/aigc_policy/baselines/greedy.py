"""Full-information greedy baselines built on placement.earliest_finish."""

from __future__ import annotations

from aigc_policy.baselines.common import priority_head, smallest_gang
from aigc_policy.placement import (
    Placement,
    allowed_gang_sizes,
    candidate_gangs,
    earliest_finish,
    eligible_nodes,
    estimate,
    min_acceptable_steps,
    step_time,
)
from aigc_policy.snapshot import ClusterSnapshot, TaskSpec


class EarliestFinish:
    """Highest-priority task, minimum acceptable steps, the gang (any size) that finishes first.

    Warm-aware because estimate() charges the cold-start load on non-resident gangs.
    """

    name = "eft"

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        index = priority_head(snap)
        task = snap.queue[index]
        steps = min_acceptable_steps(snap.perf, task)
        best = earliest_finish(snap, task, steps)
        return None if best is None else Placement(index, best[0], steps)


class OptTs:
    """LAD-TS's Opt-TS: per task in FIFO order, the single node with the smallest delay."""

    name = "opt-ts"

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        task = snap.queue[0]
        steps = min_acceptable_steps(snap.perf, task)
        if 1 not in allowed_gang_sizes(snap, task):  # a gang-only task: best gang instead
            best = earliest_finish(snap, task, steps)
            return None if best is None else Placement(0, best[0], steps)
        best_node, best_done = None, 0.0
        for i in eligible_nodes(snap, task, 1):
            done = estimate(snap, task, (i,), steps).done_s
            if best_node is None or done < best_done:
                best_node, best_done = i, done
        if best_node is None:
            return None
        return Placement(0, (best_node,), steps)


class WarmFirst:
    """Model affinity: the visible placement that needs no model load and finishes first; when
    none does, `eft` for the head task. Alone it starves tasks whose model is not loaded (every
    load waits for the warm work to run dry); it is a base for the rollout planner, which
    decides when a load is worth it.
    """

    name = "warm-first"

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        best: Placement | None = None
        best_done = 0.0
        for index, task in enumerate(snap.queue):
            steps = min_acceptable_steps(snap.perf, task)
            for _, gang in candidate_gangs(snap, task):
                est = estimate(snap, task, gang, steps)
                if not est.cold and (best is None or est.done_s < best_done):
                    best, best_done = Placement(index, gang, steps), est.done_s
        return best if best is not None else EarliestFinish().decide(snap)


class ShortestFirst:
    """SPT: the visible task with the shortest possible service first, on its earliest-finish gang.

    Shortest-processing-time order minimises the mean flow time of a batch (Smith's rule), so it
    pays when many tasks wait at once (ladts-reference: ~510 per slot); with one task at a time
    it is `eft` without priorities. The service is the fastest eligible class's, at the task's
    smallest runnable gang and its fewest acceptable steps; ties go to the FIFO order.
    `spt:W` only looks at the first W visible tasks (e.g. the EAT encoder's window, as a teacher).
    """

    name = "spt"

    def __init__(self, window: str | int | None = None) -> None:
        try:
            self.window = None if window is None else int(window)
        except ValueError:
            raise ValueError(f"spt:W needs a whole number of tasks, got {window!r}") from None
        if self.window is not None and self.window < 1:
            raise ValueError(f"spt:W needs W >= 1, got {self.window}")

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        ranked = sorted((service, i) for i, task in enumerate(snap.queue[: self.window])
                        if (service := self._fastest_service(snap, task)) is not None)
        for _, index in ranked:
            task = snap.queue[index]
            steps = min_acceptable_steps(snap.perf, task)
            best = earliest_finish(snap, task, steps)
            if best is not None:
                return Placement(index, best[0], steps)
        return None

    @staticmethod
    def _fastest_service(snap: ClusterSnapshot, task: TaskSpec) -> float | None:
        found = smallest_gang(snap, task)
        if found is None:
            return None
        k, eligible = found
        classes = {snap.nodes[i].gpu_class for i in eligible}
        return min_acceptable_steps(snap.perf, task) * min(step_time(snap.perf, task, c, k) for c in classes)
