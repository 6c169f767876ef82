"""What the LAD-TS family sees and does in our harness (numpy only: the ONNX runner uses it too).

Decision: the head of the queue, every call (the paper decides every task in arrival order and
never waits). Action: an anchor node. The gang size is the smallest the task allows that has
enough eligible nodes, the gang is `complete_gang(anchor)` and the steps are the fewest that
meet the task's quality floor, so on the LAD-TS scenario (k = 1, fixed step demand) an action
is exactly the paper's "index of the target ES".

Agents: the paper runs one agent per base station; a task's agent is the index of its origin
node when the model has one agent per node, else agent 0.

State (all times in units of TIME_SCALE_S), for the anchor gang of every node i:
  [input Mbit, work (steps x work_scale: Gcycles on ladts-reference),
   slot_wait_i   (Q_i(t)/f_i: wait behind what was queued when the current instant began),
   added_wait_i  (B_i(t)/f_i: wait added by placements decided at this same instant),
   run_i         (service + transfer of the task on that gang)]
`slot_load=False` zeroes added_wait, the reference's state without B(t) (spec §8.3).

Latent memory key (LAD-TS): (agent, ordinal of the task among its agent's tasks that arrived at
the same instant, model, node count). On ladts-reference that is the paper's figure X_b[n]; on a
Poisson workload every task is ordinal 0, so the key is per (model, cluster size): the memory
then holds the distribution last used for that model, a warm-placement prior. `memory_per_slot`
adds the arrival instant, the reference code's X[t][b][n].
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aigc_policy.baselines.common import smallest_gang
from aigc_policy.placement import Placement, complete_gang, estimate, min_acceptable_steps
from aigc_policy.snapshot import ClusterSnapshot

TIME_SCALE_S = 10.0
TASK_FEATURES = 2
NODE_BLOCKS = 3  # slot_wait, added_wait, run


def state_dim(n_nodes: int) -> int:
    return TASK_FEATURES + NODE_BLOCKS * n_nodes


@dataclass(frozen=True)
class ObserverConfig:
    n_agents: int = 1
    slot_load: bool = True  # False: reference bug, B(t) missing from the state
    memory_per_slot: bool = False  # True: reference memory index (t, b, n)


@dataclass(slots=True)
class Observation:
    agent: int
    state: np.ndarray  # [state_dim] float32
    mask: np.ndarray  # [n_nodes] bool: anchors that give a runnable gang
    gangs: list[tuple[int, ...] | None]
    steps: int
    key: Hashable  # latent memory key
    instant: float  # snapshot time: the "slot" the decision belongs to


class Observer:
    """Snapshot -> Observation of the head task; remembers each node's free_at when time moved."""

    def __init__(self, cfg: ObserverConfig) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.instant: float | None = None
        self.slot_free_at: list[float] = []
        self.ordinals: dict[tuple[int, float, str], int] = {}

    def observe(self, snap: ClusterSnapshot) -> Observation | None:
        if not snap.queue:
            return None
        if snap.now != self.instant:
            self.instant = snap.now
            self.slot_free_at = [n.free_at for n in snap.nodes]
            self.ordinals.clear()
        task = snap.queue[0]
        found = smallest_gang(snap, task)
        if found is None:
            return None
        k, eligible = found
        steps = min_acceptable_steps(snap.perf, task)
        n = len(snap.nodes)
        gangs: list[tuple[int, ...] | None] = [None] * n
        state = np.zeros(state_dim(n), np.float32)
        state[0], state[1] = task.input_mbit, task.max_steps * task.work_scale
        slot_wait, added_wait, run = (state[TASK_FEATURES + b * n: TASK_FEATURES + (b + 1) * n] for b in range(3))
        for i in eligible:
            gang = gangs[i] = complete_gang(snap, task, k, i)
            if gang is None:
                continue
            est = estimate(snap, task, gang, steps)
            wait = est.start_s - snap.now
            queued = max(max(self.slot_free_at[j] for j in gang) - snap.now, 0.0)
            slot_wait[i] = queued / TIME_SCALE_S
            added_wait[i] = max(wait - queued, 0.0) / TIME_SCALE_S if self.cfg.slot_load else 0.0
            run[i] = (est.service_s + est.transfer_s) / TIME_SCALE_S
        mask = np.array([g is not None for g in gangs])
        if not mask.any():
            return None
        agent = self._agent(snap, task.origin)
        return Observation(agent, state, mask, gangs, steps, self._key(agent, snap, task.model), snap.now)

    def _agent(self, snap: ClusterSnapshot, origin: str | None) -> int:
        if self.cfg.n_agents == 1 or origin is None:
            return 0
        return next((i for i, node in enumerate(snap.nodes) if node.name == origin), 0) % self.cfg.n_agents

    def _key(self, agent: int, snap: ClusterSnapshot, model: str) -> Hashable:
        slot_key = (agent, snap.now, model)
        ordinal = self.ordinals.get(slot_key, 0)
        self.ordinals[slot_key] = ordinal + 1
        key = (agent, ordinal, model, len(snap.nodes))
        return (*key, snap.now) if self.cfg.memory_per_slot else key

    @staticmethod
    def placement(obs: Observation, action: int) -> Placement:
        gang = obs.gangs[action]
        if gang is None:
            raise ValueError(f"action {action} is masked")
        return Placement(0, gang, obs.steps)


def stale_next_state(state: np.ndarray, n_nodes: int) -> np.ndarray:
    """The reference's s' at a slot boundary: queues not yet updated, so zeros (spec §8.4)."""
    stale = state.copy()
    stale[TASK_FEATURES: TASK_FEATURES + 2 * n_nodes] = 0.0
    return stale


class LatentMemory:
    """X[key] = the last action distribution produced under `key`; read as x_I by the next call.

    A key never seen starts from N(0, I) drawn from this memory's own seeded generator while
    training (spec §4.1), and from the uniform distribution when evaluating: a uniform x_I adds
    the same constant to every logit, i.e. no prior at all.
    """

    def __init__(self, n_actions: int, seed: int, gaussian_init: bool) -> None:
        self.n_actions = n_actions
        self.gaussian_init = gaussian_init
        self.rng = np.random.default_rng(seed)
        self.table: dict[Hashable, np.ndarray] = {}

    def read(self, key: Hashable) -> np.ndarray:
        x = self.table.get(key)
        if x is None:
            x = (self.rng.standard_normal(self.n_actions).astype(np.float32) if self.gaussian_init
                 else np.full(self.n_actions, 1.0 / self.n_actions, np.float32))
            self.table[key] = x
        return x

    def write(self, key: Hashable, probs: np.ndarray) -> None:
        self.table[key] = np.asarray(probs, np.float32).copy()


class Brain(Protocol):
    """A trained LAD-TS-family network, in torch (training) or ONNX Runtime (deployment)."""

    latent: str  # "memory" (LAD-TS), "gaussian" (D2SAC-TS) or "none"
    noise_steps: int  # reverse-chain noise draws per decision, 0 without a chain

    def scores(self, obs: Observation, latent: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Action probabilities (policy algorithms) or masked Q-values (DQN), shape [n_nodes].

        latent [D, n] and noise [D, I-1, n] hold D draws of the chain's randomness; the result is
        the mean over the draws, i.e. a Monte-Carlo estimate of the policy's action distribution.
        """
        ...

    def choose(self, scores: np.ndarray, mask: np.ndarray, explore: bool, rng: np.random.Generator) -> int: ...


@dataclass(slots=True)
class Decision:
    obs: Observation
    latent: np.ndarray
    action: int
    placement: Placement


# Greedy = arg-max of the policy's action distribution, the chain noise (and D2SAC-TS's x_I)
# marginalised over this many draws. The zero-noise posterior-mean path is not used: the
# ε-network only ever saw noisy chain states, and on edge-hetero that path placed ~3x worse.
GREEDY_CHAIN_SAMPLES = 16


class TaskScheduler:
    """The Scheduler of every LAD-TS-family policy: observe, seed the chain, choose, remember.

    `reset(seed)` starts an independent run: a fresh latent memory unless `keep_memory`
    reproduces the reference, whose memory lived as long as the process. `new_episode()` keeps
    the memory, as training does between episodes.
    """

    def __init__(self, name: str, brain: Brain, observer: ObserverConfig, *, explore: bool = False,
                 gaussian_memory_init: bool = False, keep_memory: bool = False, seed: int = 0) -> None:
        self.name = name
        self.brain = brain
        self.observer = Observer(observer)
        self.explore = explore
        self.gaussian_memory_init = gaussian_memory_init
        self.keep_memory = keep_memory
        self.memory: LatentMemory | None = None
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.observer.reset()
        if self.memory is None or not self.keep_memory:
            self.memory = None  # built on first use, when the node count is known
            self.memory_seed = seed

    def new_episode(self) -> None:
        self.observer.reset()

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        decision = self.step(snap)
        return None if decision is None else decision.placement

    def step(self, snap: ClusterSnapshot) -> Decision | None:
        obs = self.observer.observe(snap)
        if obs is None:
            return None
        n = len(obs.mask)
        draws = 1 if self.explore else GREEDY_CHAIN_SAMPLES
        latent = self._latent(obs, draws)
        noise = (self.rng.standard_normal((draws, self.brain.noise_steps, n)).astype(np.float32)
                 if self.brain.noise_steps else None)
        scores = self.brain.scores(obs, latent, noise)
        action = self.brain.choose(scores, obs.mask, self.explore, self.rng)
        if self.brain.latent == "memory":
            self._memory(n).write(obs.key, scores)
        return Decision(obs, latent[0], action, Observer.placement(obs, action))

    def _latent(self, obs: Observation, draws: int) -> np.ndarray:
        """x_I, [draws, n]: the memory entry (repeated), fresh N(0, I) draws (D2SAC-TS) or zeros."""
        n = len(obs.mask)
        if self.brain.latent == "memory":
            return np.broadcast_to(self._memory(n).read(obs.key), (draws, n))
        if self.brain.latent == "gaussian":
            return self.rng.standard_normal((draws, n)).astype(np.float32)
        return np.zeros((draws, n), np.float32)

    def _memory(self, n_actions: int) -> LatentMemory:
        if self.memory is None or self.memory.n_actions != n_actions:
            self.memory = LatentMemory(n_actions, self.memory_seed, self.gaussian_memory_init)
        return self.memory


def choose_from_probs(probs: np.ndarray, mask: np.ndarray, explore: bool, rng: np.random.Generator) -> int:
    if not explore:
        return int(np.argmax(np.where(mask, probs, -1.0)))
    p = np.where(mask, probs, 0.0).astype(np.float64)
    return int(rng.choice(len(p), p=p / p.sum()))


def choose_epsilon_greedy(q: np.ndarray, mask: np.ndarray, explore: bool, rng: np.random.Generator,
                          epsilon: float) -> int:
    if explore and rng.random() < epsilon:
        return int(rng.choice(np.flatnonzero(mask)))
    return int(np.argmax(np.where(mask, q, -np.inf)))
