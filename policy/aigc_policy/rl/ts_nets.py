"""Building blocks shared by the LAD-TS family (DQN-TS, SAC-TS, D2SAC-TS, LAD-TS).

The paper runs one independent agent per base station. Here the N agents' weights are stacked
along a leading axis, so all agents are updated in one batched step and exported as one ONNX
graph that gathers the weights of the deciding agent. Every parameter slice only ever receives
gradients from its own agent's loss, and Adam is elementwise, so this is exactly N independent
agents with N independent optimisers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from aigc_policy.rl.ts_env import NODE_BLOCKS, TASK_FEATURES, state_dim


class AgentLinear(nn.Module):
    """A Linear layer per agent, initialised like nn.Linear (U(±1/sqrt(fan_in)))."""

    def __init__(self, n_agents: int, fan_in: int, fan_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(n_agents, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_agents, fan_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        """x [B, fan_in] with agent [B], or x [R, B, fan_in] with agent [R]: one batch per agent."""
        if x.dim() == 3:
            return torch.baddbmm(self.bias[agent].unsqueeze(1), x, self.weight[agent])
        return (x.unsqueeze(1) @ self.weight[agent]).squeeze(1) + self.bias[agent]


class AgentMLP(nn.Module):
    """Per-agent ReLU MLP: fan_in -> hidden -> hidden -> fan_out (the reference's width-20 nets)."""

    def __init__(self, n_agents: int, fan_in: int, hidden: int, fan_out: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [AgentLinear(n_agents, fan_in, hidden), AgentLinear(n_agents, hidden, hidden),
             AgentLinear(n_agents, hidden, fan_out)]
        )

    def forward(self, x: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, agent)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class FlatNet(nn.Module):
    """The paper's network: one MLP over [per-node inputs, shared inputs, whole state] -> one output per node.

    Output j is node j, so the comparison of nodes is learned separately for every output.
    """

    def __init__(self, n_agents: int, n_nodes: int, hidden: int, node_inputs: int = 0, shared_inputs: int = 0) -> None:
        super().__init__()
        self.mlp = AgentMLP(n_agents, node_inputs * n_nodes + shared_inputs + state_dim(n_nodes), hidden, n_nodes)

    def forward(self, state: torch.Tensor, agent: torch.Tensor, node_in: torch.Tensor | None = None,
                shared_in: torch.Tensor | None = None) -> torch.Tensor:
        parts = [] if node_in is None else [node_in.flatten(-2)]
        parts += [] if shared_in is None else [shared_in]
        return self.mlp(torch.cat([*parts, state], -1), agent)


NODE_TOKEN = TASK_FEATURES + 2 * NODE_BLOCKS  # task, the node's blocks, the blocks' mean over nodes


def node_tokens(state: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """[..., S] -> [..., N, NODE_TOKEN]: per node the task features, its own blocks and the cluster mean."""
    task = state[..., :TASK_FEATURES]
    blocks = state[..., TASK_FEATURES:].unflatten(-1, (NODE_BLOCKS, n_nodes)).transpose(-1, -2)
    mean = blocks.mean(-2, keepdim=True).expand_as(blocks)
    return torch.cat([task.unsqueeze(-2).expand(*blocks.shape[:-1], TASK_FEATURES), blocks, mean], -1)


class PerNodeNet(nn.Module):
    """One MLP scores every node from that node's token: the same weights for every node.

    Comparing nodes is learned once instead of per output, which is what lets a small network
    follow the load placed within a slot (B_i) closely enough for a greedy arg-max.
    """

    def __init__(self, n_agents: int, n_nodes: int, hidden: int, node_inputs: int = 0, shared_inputs: int = 0) -> None:
        super().__init__()
        self.n_nodes = n_nodes
        self.mlp = AgentMLP(n_agents, node_inputs + shared_inputs + NODE_TOKEN, hidden, 1)

    def forward(self, state: torch.Tensor, agent: torch.Tensor, node_in: torch.Tensor | None = None,
                shared_in: torch.Tensor | None = None) -> torch.Tensor:
        tokens = node_tokens(state, self.n_nodes)
        parts = [] if node_in is None else [node_in]
        parts += [] if shared_in is None else [shared_in.unsqueeze(-2).expand(*tokens.shape[:-1], shared_in.shape[-1])]
        x = torch.cat([*parts, tokens], -1)
        # -1 for the batch axis: a traced shape would be baked into the exported graph
        if x.dim() == 3:  # [B, N, f] with agent [B]: one row per (decision, node)
            out = self.mlp(x.flatten(0, 1), agent.unsqueeze(-1).expand(-1, self.n_nodes).flatten())
            return out.reshape(-1, self.n_nodes)
        out = self.mlp(x.flatten(1, 2), agent)  # [R, B, N, f] with agent [R]: one batch per agent
        return out.reshape(len(agent), -1, self.n_nodes)


NETS = {"flat": FlatNet, "per-node": PerNodeNet}


def make_net(kind: str, n_agents: int, n_nodes: int, hidden: int, node_inputs: int = 0,
             shared_inputs: int = 0) -> FlatNet | PerNodeNet:
    if kind not in NETS:
        raise ValueError(f"net must be one of {tuple(NETS)}, got {kind!r}")
    return NETS[kind](n_agents, n_nodes, hidden, node_inputs, shared_inputs)


NEG = -1e9  # masked logit / Q-value: finite so that 0 * NEG stays 0 in expectations


def masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, torch.full_like(values, NEG))


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.lerp_(s, tau)


class AgentReplay:
    """One ring buffer per agent, stored as stacked arrays so a batch for all agents is one gather.

    A transition is (s, mask, a, x_I, r, s', mask', x'_I, done); x_I is the latent memory the
    actor started from (zeros for the algorithms without one).
    """

    FIELDS = ("state", "mask", "action", "latent", "reward", "next_state", "next_mask", "next_latent", "done")

    def __init__(self, n_agents: int, capacity: int, state_dim: int, n_actions: int) -> None:
        shapes = {
            "state": (state_dim,), "mask": (n_actions,), "action": (), "latent": (n_actions,),
            "reward": (), "next_state": (state_dim,), "next_mask": (n_actions,),
            "next_latent": (n_actions,), "done": (),
        }
        dtypes = {"mask": np.bool_, "next_mask": np.bool_, "action": np.int64}
        self.data = {k: np.zeros((n_agents, capacity, *shapes[k]), dtypes.get(k, np.float32)) for k in self.FIELDS}
        self.capacity = capacity
        self.size = np.zeros(n_agents, np.int64)
        self.cursor = np.zeros(n_agents, np.int64)

    def add(self, agent: int, **transition: np.ndarray | float | int | bool) -> None:
        i = self.cursor[agent]
        for key in self.FIELDS:
            self.data[key][agent, i] = transition[key]
        self.cursor[agent] = (i + 1) % self.capacity
        self.size[agent] = min(self.size[agent] + 1, self.capacity)

    def ready(self, warmup: int) -> np.ndarray:
        """Indices of the agents whose buffer holds more than `warmup` transitions."""
        return np.flatnonzero(self.size > warmup)

    def sample(self, agents: np.ndarray, batch: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """`batch` uniform draws from each listed agent: tensors [len(agents), batch, ...], agent [len(agents)]."""
        rows = (rng.random((len(agents), batch)) * self.size[agents, None]).astype(np.int64)
        out = {k: torch.from_numpy(v[agents[:, None], rows]) for k, v in self.data.items()}
        out["agent"] = torch.from_numpy(agents)
        return out
