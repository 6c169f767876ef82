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


def mean_wait_after(waits: list[float], removed: int) -> float:
    """W-bar: mean waiting time of the visible queue (`waits`, in queue order) once the
    dispatched task has left it; summed left to right exactly as the list without it would be."""
    if len(waits) < 2:
        return 0.0
    return sum(waits[removed + 1 :], sum(waits[:removed])) / (len(waits) - 1)


@lru_cache(maxsize=1024)
def _steps_worth_scoring(perf: PerfModel, model: str, steps: range) -> tuple[tuple[int, float], ...]:
    """(steps, quality) up to the first step count of top quality. Past it a step count adds
    response time and no quality, and EAT's reward falls with response time, so it can never
    score higher (nor tie first)."""
    qualities = [perf.quality(model, s) for s in steps]
    peak = qualities.index(max(qualities))
    return tuple(zip(steps[: peak + 1], qualities[: peak + 1], strict=True))


class EatGreedy:
    """Fixed Greedy: best (task, gang size, steps) by immediate reward, steps searched properly."""

    name = "eat-greedy"
    always_max_steps = False

    def reset(self, seed: int) -> None:
        return None

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        if not any(n.up and n.free_at <= snap.now + _IDLE_EPS for n in snap.nodes):
            return None  # EAT dispatches onto idle nodes only: wait
        best: Placement | None = None
        best_reward = 0.0
        waits = [snap.now - t.arrival_s for t in snap.queue]
        for index, task in enumerate(snap.queue):
            for k in allowed_gang_sizes(snap, task):
                gang = eat_gang(snap, task, k)
                if gang is None:
                    continue
                reward, steps = self._best_steps(snap, task, gang, mean_wait_after(waits, index))
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
        start, per_step, load, transfer = est.start_s, est.step_s, est.load_s, est.transfer_s
        wait_term, arrival = W_WAIT * mean_wait_s, task.arrival_s
        best_reward, best_steps = 0.0, 0
        for steps, quality in _steps_worth_scoring(snap.perf, task.model, steps_range):
            done = start + (steps * per_step + load) + transfer  # as Estimate.done_s adds it up
            time_term = W_TIME / (wait_term + (done - arrival))
            reward = (time_term if time_term < TIME_CAP else TIME_CAP) + W_QUALITY * quality
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
