"""SAC-TS: discrete soft actor-critic, one agent per base station (LAD-TS paper baseline, spec §5).

This file is also the learner of LAD-TS and D2SAC-TS: they only swap the actor (rl/ladts.py).
Per update, for every agent with a warm buffer, on a batch of its own transitions:

    y      = r + γ (1 - done) Σ_a π'(a) [min(Q̄1, Q̄2)(s', a)] + γ (1 - done) α H(π')
    critic = MSE(Q_i(s, a), y)                          (i = 1, 2)
    actor  = mean(-α H(π) - Σ_a π(a) min(Q1, Q2)(s, a))
    α      = exp(log α), loss mean(α (H - H_target).detach())

The reference sets H_target = -1, below any entropy, so α can only shrink (spec §8.7); here the
target is a fraction of log|A| unless `alpha_collapse` reproduces the reference.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from aigc_policy.rl.ts_nets import make_net, masked, soft_update


@dataclass
class SacConfig:
    hidden: int = 20
    net: str = "per-node"  # ts_nets.PerNodeNet; "flat" is the paper's MLP over the whole state
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    alpha_lr: float = 3e-4
    alpha0: float = 0.05
    gamma: float = 0.95
    tau: float = 0.005
    target_entropy_ratio: float = 0.3  # H_target = ratio * log|A|
    alpha_collapse: bool = False  # reference bug: H_target = -1


class MlpActor(nn.Module):
    """SAC-TS actor: per-agent MLP s -> logits, softmax over the valid ESs. Ignores latent and noise."""

    noise_steps = 0

    def __init__(self, n_agents: int, n_nodes: int, hidden: int, net: str = "per-node") -> None:
        super().__init__()
        self.net = make_net(net, n_agents, n_nodes, hidden)

    def forward(
        self, state: torch.Tensor, latent: torch.Tensor, agent: torch.Tensor, mask: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return torch.softmax(masked(self.net(state, agent), mask), -1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs + 1e-8)).sum(-1)


class DiscreteSac(nn.Module):
    """Twin critics, target critics and a per-agent temperature around any actor module."""

    def __init__(self, actor: nn.Module, n_agents: int, n_nodes: int, cfg: SacConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.actor = actor
        self.q1 = make_net(cfg.net, n_agents, n_nodes, cfg.hidden)
        self.q2 = make_net(cfg.net, n_agents, n_nodes, cfg.hidden)
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((n_agents,), math.log(cfg.alpha0)))
        self.target_entropy = -1.0 if cfg.alpha_collapse else cfg.target_entropy_ratio * math.log(n_nodes)
        self.actor_opt = torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)

    def policy(self, batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        """π(· | s) (prefix "") or π(· | s') (prefix "next_") with fresh reverse-chain noise."""
        state, mask = batch[prefix + "state"], batch[prefix + "mask"]
        noise = torch.randn(*mask.shape[:-1], self.actor.noise_steps, mask.shape[-1]) if self.actor.noise_steps else None
        latent = self.update_latent(batch[prefix + "latent"])
        return self.actor(state, latent, batch["agent"], mask, noise)

    def update_latent(self, stored: torch.Tensor) -> torch.Tensor:
        """The x_I an update feeds the actor; D2SAC-TS redraws it, LAD-TS replays the memory read."""
        return stored

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, agent = self.cfg, batch["agent"]
        alpha = self.log_alpha.exp()[agent].detach().unsqueeze(-1)  # batches are [agents, batch, ...]
        with torch.no_grad():
            next_probs = self.policy(batch, "next_")
            q_next = torch.min(self.q1_target(batch["next_state"], agent), self.q2_target(batch["next_state"], agent))
            v_next = (next_probs * q_next).sum(-1) + alpha * entropy(next_probs)
            y = batch["reward"] + cfg.gamma * (1.0 - batch["done"]) * v_next
        act = batch["action"].unsqueeze(-1)
        q1 = self.q1(batch["state"], agent).gather(-1, act).squeeze(-1)
        q2 = self.q2(batch["state"], agent).gather(-1, act).squeeze(-1)
        critic_loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        probs = self.policy(batch)
        with torch.no_grad():
            q = torch.min(self.q1(batch["state"], agent), self.q2(batch["state"], agent))
        h = entropy(probs)
        actor_loss = (-alpha * h - (probs * q).sum(-1)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = (self.log_alpha.exp()[agent].unsqueeze(-1) * (h.detach() - self.target_entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()
        soft_update(self.q1_target, self.q1, cfg.tau)
        soft_update(self.q2_target, self.q2, cfg.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "alpha": self.log_alpha.exp().mean().item(), "entropy": h.mean().item()}
