"""DQN-TS: per-agent deep Q-network with ε-greedy exploration (LAD-TS paper baseline, spec §5).

    y = r + γ (1 - done) max_a Q̄(s', a),  loss = MSE(Q(s, a), y)

ε is fixed at 0.01, the target network is a hard copy every 200 updates, lr 1e-4.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from aigc_policy.rl.ts_nets import make_net, masked


@dataclass
class DqnConfig:
    hidden: int = 20
    net: str = "per-node"  # as SacConfig.net
    lr: float = 1e-4
    gamma: float = 0.95
    epsilon: float = 0.01
    target_every: int = 200


class Dqn(nn.Module):
    def __init__(self, n_agents: int, n_nodes: int, cfg: DqnConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.q = make_net(cfg.net, n_agents, n_nodes, cfg.hidden)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr)
        self.updates = 0

    def values(self, state: torch.Tensor, agent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked(self.q(state, agent), mask)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        agent = batch["agent"]
        with torch.no_grad():
            q_next = masked(self.q_target(batch["next_state"], agent), batch["next_mask"]).max(-1).values
            y = batch["reward"] + self.cfg.gamma * (1.0 - batch["done"]) * q_next
        q = self.q(batch["state"], agent).gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1)
        loss = ((q - y) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.updates += 1
        if self.updates % self.cfg.target_every == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        return {"q_loss": loss.item()}
