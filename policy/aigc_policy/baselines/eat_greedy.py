"""EAT's Greedy baseline: one-step lookahead on EAT's dispatch reward (eat-spec §4.4, §6).

Both variants dispatch only onto idle nodes with EAT's placement heuristic (an idle warm
group of exactly k, else the lowest-indexed idle nodes) and wait otherwise.
`eat-greedy` searches steps and tasks as intended; `eat-greedy-ref` reproduces the shipped
encoding bug: the swapped action slots always run max steps, so it only picks the task with
the best immediate reward, ties to the lowest queue index.
"""

from __future__ import annotations

from functools import lru_cache

from aigc_policy.placement import (
    Placement,
    allowed_gang_sizes,
    eligible_nodes,
    estimate,
)
from aigc_policy.snapshot import ClusterSnapshot, PerfModel, TaskSpec

W_TIME, W_QUALITY, W_WAIT, TIME_CAP = 250.0, 10.0, 1.0, 10.0  # Simu make_env weights
_IDLE_EPS = 1e-9


def eat_gang(snap: ClusterSnapshot, task: TaskSpec, k: int) -> tuple[int, ...] | None:
    """EAT's server selection among idle nodes (eat-spec §3.3)."""
    nodes = snap.nodes
    idle = [i for i in eligible_nodes(snap, task, k) if nodes[i].free_at <= snap.now + _IDLE_EPS]
    if len(idle) < k:
        return None
    idle_names = {nodes[i].name: i for i in idle}
    for i in idle:
        for r in nodes[i].resident:
            if r.model == task.model and len(r.group) == k and all(name in idle_names for name in r.group):
                return tuple(sorted(idle_names[name] for name in r.group))
    return tuple(idle[:k])


def mean_wait_after(snap: ClusterSnapshot, removed: int) -> float:
    """W-bar: mean waiting time of the visible queue once the dispatched task has left it."""
    waits = [snap.now - t.arrival_s for j, t in enumerate(snap.queue) if j != removed]
    return sum(waits) / len(waits) if waits else 0.0


@lru_cache(maxsize=1024)
def _quality_table(perf: PerfModel, model: str, steps: range) -> tuple[float, ...]:
    return tuple(perf.quality(model, s) for s in steps)


class EatGreedy:
    """Fixed Greedy: best (task, gang size, steps) by immediate reward, steps searched properly."""

    name = "eat-greedy"
    always_max_steps = False

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        best: Placement | None = None
        best_reward = 0.0
        for index, task in enumerate(snap.queue):
            mean_wait_s = mean_wait_after(snap, index)
            for k in allowed_gang_sizes(snap, task):
                gang = eat_gang(snap, task, k)
                if gang is None:
                    continue
                reward, steps = self._best_steps(snap, task, gang, mean_wait_s)
                if best is None or reward > best_reward:  # ties: the first found
                    best, best_reward = Placement(index, gang, steps), reward
        return best

    def _best_steps(
        self, snap: ClusterSnapshot, task: TaskSpec, gang: tuple[int, ...], mean_wait_s: float
    ) -> tuple[float, int]:
        """EAT's dispatch reward at the best step count for this gang, and that count (the fewest
        among equals). The gang is priced once: only service time and quality move with the steps."""
        steps_range = self._steps(task)
        est = estimate(snap, task, gang, steps_range[0])
        wait_term = W_WAIT * mean_wait_s
        best_reward, best_steps = 0.0, 0
        qualities = _quality_table(snap.perf, task.model, steps_range)
        for steps, quality in zip(steps_range, qualities, strict=True):
            done = est.start_s + (steps * est.step_s + est.load_s) + est.transfer_s  # Estimate.done_s
            reward = min(TIME_CAP, W_TIME / (wait_term + (done - task.arrival_s))) + W_QUALITY * quality
            if not best_steps or reward > best_reward:
                best_reward, best_steps = reward, steps
        return best_reward, best_steps

    def _steps(self, task: TaskSpec) -> range:
        if self.always_max_steps:
            return range(task.max_steps, task.max_steps + 1)
        return range(task.min_steps, task.max_steps + 1)


class EatGreedyReference(EatGreedy):
    """The Greedy as shipped: swapped slots, so always max steps (eat-spec §6)."""

    name = "eat-greedy-ref"
    always_max_steps = True
