"""Masked discrete SAC over the factorised action (placement a, then steps bucket b | task(a)).

pi(a, b | s) = pi(a | s) * pi(b | s, task(a)), and each critic is additive:
Q(s, a, b) = Q_place(s, a) + [a != wait] * Q_steps(s, task(a), b). Both factors are small
discrete distributions, so the soft value V(s) = E_pi[min_j Q_j - alpha * log pi] is an exact
sum, not a sample. Time between decisions varies (event-driven simulator), so the bootstrap is
discounted by gamma_decision * gamma ** dt with dt in seconds (SMDP, with a per-decision
factor so the horizon stays tens of decisions at any load). The temperature is tuned automatically
towards `entropy_ratio * log(#valid choices)`, a scaled version of the usual 0.98 * log|A|:
scheduling has one good action much more often than a uniform policy would suggest.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aigc_policy.actions import WAIT
from aigc_policy.features import N_GANG
from aigc_policy.rl.networks import AgentNet
from aigc_policy.rl.replay import Transition, collate, padded_actions


@dataclass
class SacConfig:
    gamma: float = 0.995  # per second of simulated time
    gamma_decision: float = 0.97  # per decision: a horizon of tens of decisions at any load
    tau: float = 0.01
    lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 0.01
    entropy_ratio: float = 0.1
    bc_weight: float = 1.0  # imitation term on teacher transitions, keeps the warm start ...
    bc_final: float = 0.05  # ... decayed linearly to this weight ...
    bc_decay_updates: int = 4000  # ... over this many actor updates, so SAC can leave the teacher

    def bc_weight_at(self, updates: int) -> float:
        frac = min(1.0, updates / max(1, self.bc_decay_updates))
        return self.bc_weight + (self.bc_final - self.bc_weight) * frac


def _task_probs(pi: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """P(task i) [B, Q] from the flat placement distribution [B, A]."""
    return pi[:, 1:].reshape(pi.shape[0], n_tasks, -1).sum(-1)


def soft_value(
    logits: torch.Tensor, steps_logits: torch.Tensor, q_place: torch.Tensor, q_steps: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """E_pi[Q - alpha log pi] and the entropy H(pi) per sample, both [B]."""
    logp, logp_b = logits.log_softmax(-1), steps_logits.log_softmax(-1)
    pi, pi_b = logp.exp(), logp_b.exp()
    p_task = _task_probs(pi, steps_logits.shape[1])
    steps_term = (pi_b * (q_steps - alpha * logp_b)).sum(-1)
    value = (pi * (q_place - alpha * logp)).sum(-1) + (p_task * steps_term).sum(-1)
    entropy = -(pi * logp).sum(-1) - (p_task * (pi_b * logp_b).sum(-1)).sum(-1)
    return value, entropy


def target_entropy(batch: dict[str, torch.Tensor], ratio: float) -> torch.Tensor:
    n_actions = batch["action_mask"].sum(-1).clamp(min=1).float()
    n_buckets = batch["steps_mask"].sum(-1).clamp(min=1).float().max(-1).values
    return ratio * (n_actions.log() + n_buckets.log())


class SacLearner:
    def __init__(self, net: AgentNet, cfg: SacConfig) -> None:
        self.net = net
        self.cfg = cfg
        self.target = copy.deepcopy(net).requires_grad_(False)
        self.log_alpha = torch.tensor(float(torch.tensor(cfg.init_alpha).log()), requires_grad=True)
        self.critic_opt = torch.optim.Adam([*net.encoder.parameters(), *net.critics.parameters()], lr=cfg.lr)
        self.actor_opt = torch.optim.Adam(net.actor.parameters(), lr=cfg.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.bc_opt = torch.optim.Adam([*net.encoder.parameters(), *net.actor.parameters()], lr=cfg.lr)
        self.actor_updates = 0

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def bc_loss(self, transitions: Sequence[Transition], detach_encoder: bool) -> torch.Tensor:
        batch, actions, buckets = _inputs(transitions)
        logits, steps = self.net.policy(batch, self.net.chain_noise(batch), detach_encoder=detach_encoder)
        loss = F.cross_entropy(logits, actions)
        placed = actions != WAIT
        if placed.any():
            task = (actions[placed] - 1) // (N_GANG * batch["node_mask"].shape[1])
            loss = loss + F.cross_entropy(steps[placed, task], buckets[placed])
        return loss

    def bc_update(self, demos: Sequence[Transition]) -> dict[str, float]:
        loss = self.bc_loss(demos, detach_encoder=False)
        self.bc_opt.zero_grad()
        loss.backward()
        self.bc_opt.step()
        return {"bc_loss": float(loss.detach())}

    def critic_update(self, transitions: Sequence[Transition]) -> dict[str, float]:
        batch, actions, buckets = _inputs(transitions)
        with torch.no_grad():
            y = self._targets(transitions)
        loss = torch.zeros(())
        for q_place, q_steps in self.net.q_values(batch):
            loss = loss + F.mse_loss(_q_taken(q_place, q_steps, actions, buckets, batch), y)
        self.critic_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*self.net.encoder.parameters(), *self.net.critics.parameters()], 10.0)
        self.critic_opt.step()
        self._soft_update()
        return {"critic_loss": float(loss.detach()), "q_target": float(y.mean())}

    def actor_update(self, transitions: Sequence[Transition], demos: Sequence[Transition]) -> dict[str, float]:
        batch, _, _ = _inputs(transitions)
        with torch.no_grad():
            (q1, s1), (q2, s2) = self.net.q_values(batch)
        logits, steps = self.net.policy(batch, self.net.chain_noise(batch), detach_encoder=True)
        value, entropy = soft_value(logits, steps, torch.min(q1, q2), torch.min(s1, s2), self.alpha)
        loss = -value.mean()
        bc_weight = self.cfg.bc_weight_at(self.actor_updates)
        if demos and bc_weight > 0:
            loss = loss + bc_weight * self.bc_loss(demos, detach_encoder=True)
        self.actor_updates += 1
        self.actor_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.actor.parameters(), 10.0)
        self.actor_opt.step()
        goal = target_entropy(batch, self.cfg.entropy_ratio)
        alpha_loss = (self.log_alpha * (entropy.detach() - goal)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": float(loss.detach()), "entropy": float(entropy.detach().mean()), "alpha": float(self.alpha),
                "bc_weight": bc_weight}

    def _targets(self, transitions: Sequence[Transition]) -> torch.Tensor:
        reward = torch.tensor([t.reward for t in transitions], dtype=torch.float32)
        live = [t.next_state is not None for t in transitions]
        discount = torch.tensor(
            [self.cfg.gamma_decision * self.cfg.gamma**t.dt if ok else 0.0
             for t, ok in zip(transitions, live, strict=True)]
        )
        if not any(live):
            return reward
        nxt = collate([t.next_state if t.next_state is not None else t.state for t in transitions])
        logits, steps = self.net.policy(nxt, self.net.chain_noise(nxt))
        (q1, s1), (q2, s2) = self.target.q_values(nxt)
        value, _ = soft_value(logits, steps, torch.min(q1, q2), torch.min(s1, s2), self.alpha)
        return reward + discount * value

    def _soft_update(self) -> None:
        with torch.no_grad():
            for name in ("encoder", "critics"):
                online, target = getattr(self.net, name), getattr(self.target, name)
                for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                    tp.lerp_(p, self.cfg.tau)

    def state_dict(self) -> dict:
        return {
            "target": self.target.state_dict(),
            "log_alpha": self.log_alpha.detach(),
            "critic_opt": self.critic_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "bc_opt": self.bc_opt.state_dict(),
            "actor_updates": self.actor_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.bc_opt.load_state_dict(state["bc_opt"])
        self.actor_updates = int(state.get("actor_updates", 0))


def _inputs(transitions: Sequence[Transition]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    states = [t.state for t in transitions]
    batch = collate(states)
    actions = padded_actions(states, [t.action for t in transitions], batch["node_mask"].shape[1])
    buckets = torch.tensor([t.bucket for t in transitions], dtype=torch.long)
    return batch, actions, buckets


def _q_taken(
    q_place: torch.Tensor, q_steps: torch.Tensor, actions: torch.Tensor, buckets: torch.Tensor, batch: dict
) -> torch.Tensor:
    q = q_place.gather(1, actions[:, None]).squeeze(1)
    placed = actions != WAIT
    task = ((actions - 1).clamp(min=0) // (N_GANG * batch["node_mask"].shape[1])).clamp(max=q_steps.shape[1] - 1)
    q_b = q_steps[torch.arange(len(actions)), task, buckets]
    return q + placed * q_b
