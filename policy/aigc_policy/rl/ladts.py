"""LAD-TS: latent action diffusion task scheduling (Xu et al., arXiv 2412.18212; spec §4).

The actor is a 5-step DDPM reverse chain over the N action logits (vp schedule, ε-prediction,
posterior-mean sampler with its noise), conditioned on the state, followed by a softmax. The
chain does not start from Gaussian noise but from the *latent action memory*: the probability
vector the actor produced the last time it decided a task under the same memory key. The final
logits are ≈ 12.5·x_I + ε-terms (spec §4.2), so the memory acts as a refined assignment table.

D2SAC-TS is the same actor seeded with x_I ~ N(0, I) on every call and no memory.
Training is the discrete SAC of rl/sac_ts.py; the critics never see x_I.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from aigc_policy.rl.sac_ts import DiscreteSac, SacConfig
from aigc_policy.rl.ts_nets import make_net, masked

LATENT_MODES = ("memory", "gaussian")


@dataclass(frozen=True)
class VpSchedule:
    """Per-step coefficients, index k = 0..I-1 (k = i - 1 of the spec's table)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    posterior_log_var: torch.Tensor  # log σ̃², clamped at log(1e-20)
    c1: torch.Tensor  # weight of x̂0 in the posterior mean
    c2: torch.Tensor  # weight of x_k in the posterior mean


def vp_schedule(steps: int = 5, beta_min: float = 0.1, beta_max: float = 10.0) -> VpSchedule:
    """β_i = 1 - exp(-β_min/I - ½(β_max - β_min)(2i - 1)/I²), i = 1..I (spec §4.2)."""
    i = torch.arange(1, steps + 1, dtype=torch.float64)
    betas = 1.0 - torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * i - 1) / steps**2)
    alphas = 1.0 - betas
    ab = torch.cumprod(alphas, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])
    var = betas * (1.0 - ab_prev) / (1.0 - ab)
    return VpSchedule(
        betas=betas,
        alphas_cumprod=ab,
        posterior_log_var=torch.log(var.clamp(min=1e-20)),
        c1=betas * ab_prev.sqrt() / (1.0 - ab),
        c2=(1.0 - ab_prev) * alphas.sqrt() / (1.0 - ab),
    )


def step_embedding(steps: int, dim: int = 16) -> torch.Tensor:
    """Sinusoidal embedding of k = 0..steps-1: dim/2 sines then dim/2 cosines (no time-MLP)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / (half - 1))
    angles = torch.arange(steps, dtype=torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], -1).float()


class LatentDiffusionActor(nn.Module):
    """Per-agent ε-network over [x, emb(k), s] (`net`: per-node or flat, ts_nets), run as the reverse chain.

    The reference ends the ε-network in a softmax (spec §8.6): ε then lives in the simplex, so
    the state can lower one logit by at most ≈ 17.5 in total and the arg-max is decided by the
    memory. tanh (as AGOD/D2SAC) lets every logit move; `simplex_eps` reproduces the reference.
    """

    def __init__(self, n_agents: int, n_nodes: int, hidden: int = 20, steps: int = 5, t_dim: int = 16,
                 simplex_eps: bool = False, net: str = "per-node") -> None:
        super().__init__()
        self.steps = steps
        self.simplex_eps = simplex_eps
        self.noise_steps = steps - 1  # noise enters at k = I-1 .. 1
        sched = vp_schedule(steps)
        ab = sched.alphas_cumprod
        self.register_buffer("emb", step_embedding(steps, t_dim))
        self.register_buffer("recip", (1.0 / ab).sqrt().float())
        self.register_buffer("recipm1", (1.0 / ab - 1.0).sqrt().float())
        self.register_buffer("c1", sched.c1.float())
        self.register_buffer("c2", sched.c2.float())
        self.register_buffer("sigma", (0.5 * sched.posterior_log_var).exp().float())
        self.body = make_net(net, n_agents, n_nodes, hidden, node_inputs=1, shared_inputs=t_dim)

    def eps(self, x: torch.Tensor, k: int, state: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        out = self.body(state, agent, x.unsqueeze(-1), self.emb[k].expand(*x.shape[:-1], -1))
        return torch.softmax(out, -1) if self.simplex_eps else torch.tanh(out)

    def logits(self, state: torch.Tensor, latent: torch.Tensor, agent: torch.Tensor,
               noise: torch.Tensor | None) -> torch.Tensor:
        """x_I -> x_0. noise [..., I-1, A]: row j is the z added at k = I-1-j; None = mean path."""
        x = latent
        for k in range(self.steps - 1, -1, -1):
            x0 = self.recip[k] * x - self.recipm1[k] * self.eps(x, k, state, agent)
            x = self.c1[k] * x0 + self.c2[k] * x
            if k > 0 and noise is not None:
                x = x + self.sigma[k] * noise[..., self.steps - 1 - k, :]
        return x

    def forward(self, state: torch.Tensor, latent: torch.Tensor, agent: torch.Tensor, mask: torch.Tensor,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(masked(self.logits(state, latent, agent, noise), mask), -1)


class Ladts(DiscreteSac):
    """Discrete SAC around the latent diffusion actor; latent="gaussian" gives D2SAC-TS."""

    def __init__(self, n_agents: int, n_nodes: int, cfg: SacConfig, latent: str = "memory", steps: int = 5,
                 simplex_eps: bool = False) -> None:
        if latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
        actor = LatentDiffusionActor(n_agents, n_nodes, cfg.hidden, steps, simplex_eps=simplex_eps, net=cfg.net)
        super().__init__(actor, n_agents, n_nodes, cfg)
        self.latent = latent

    def update_latent(self, stored: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(stored) if self.latent == "gaussian" else stored
