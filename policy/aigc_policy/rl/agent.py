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

from aigc_policy.actions import WAIT, greedy_action, split_action
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
    """(flat action, steps bucket) for one unpadded state: sampled, or the greedy choice."""
    batch = collate([state])
    with torch.no_grad():
        logits, steps = net.policy(batch, net.chain_noise(batch) if sample else None)
    action_logits = logits[0].double().numpy()
    action = _sample(action_logits, rng) if sample else greedy_action(action_logits)
    if action == WAIT:
        return WAIT, 0
    task, _, _ = split_action(action, state.n_nodes)
    step_logits = steps[0, task].double().numpy()
    return action, _sample(step_logits, rng) if sample else int(step_logits.argmax())


def _sample(logits: np.ndarray, rng: np.random.Generator) -> int:
    p = np.exp(logits - logits.max())
    return int(rng.choice(logits.size, p=p / p.sum()))
