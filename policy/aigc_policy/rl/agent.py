"""Acting with a torch policy, and the reward it is trained on.

Reward, paid by the simulator's StepResult when a task is placed (its planned outcome):
    r = W_RESPONSE * R / (R + response_s) + W_SLO * slo_met + W_QUALITY * quality
with R = features.TIME_SCALE_S; slo_met covers both the deadline and the quality floor.
Every term is bounded and non-negative, so the SMDP discount gamma ** dt makes placing a task
later strictly worse than placing it now (a negative per-task cost would instead reward
postponing it). Waiting earns 0.
"""

from __future__ import annotations

import numpy as np
import torch

from aigc_policy.actions import WAIT, split_action
from aigc_policy.features import TIME_SCALE_S, EncodedState
from aigc_policy.rl.networks import AgentNet
from aigc_policy.rl.replay import collate
from aigc_policy.sim import StepResult

W_RESPONSE, W_SLO, W_QUALITY = 1.0, 1.0, 0.5


def step_reward(result: StepResult) -> float:
    if not result.placed:
        return 0.0
    return (
        W_RESPONSE * TIME_SCALE_S / (TIME_SCALE_S + result.response_s)
        + W_SLO * result.slo_met
        + W_QUALITY * result.quality
    )


def choose(net: AgentNet, state: EncodedState, sample: bool, rng: np.random.Generator) -> tuple[int, int]:
    """(flat action, steps bucket) for one unpadded state: sampled, or the arg-max."""
    batch = collate([state])
    with torch.no_grad():
        logits, steps = net.policy(batch, net.chain_noise(batch) if sample else None)
    pick = _sample if sample else _argmax
    action = pick(logits[0].double().numpy(), rng)
    if action == WAIT:
        return WAIT, 0
    task, _, _ = split_action(action, state.n_nodes)
    return action, pick(steps[0, task].double().numpy(), rng)


def _sample(logits: np.ndarray, rng: np.random.Generator) -> int:
    p = np.exp(logits - logits.max())
    return int(rng.choice(logits.size, p=p / p.sum()))


def _argmax(logits: np.ndarray, rng: np.random.Generator) -> int:
    return int(logits.argmax())
