"""A short denoising chain over action logits with a noise-complete cosine schedule.

The chain starts from x_T ~ N(0, I) (or zeros on the deterministic path) and, T times,
predicts the clean logits x0 from (x_t, t, a per-action condition), then moves to x_{t-1}
with the DDPM posterior. ᾱ_T ≈ 0, so x_T carries no information and the logits come from the
condition (EAT's chain had ᾱ_T ≈ 0.90 and mostly returned its input noise, eat-spec §5.4).
Predicting x0 rather than the noise keeps the step well conditioned when ᾱ_t is tiny.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_alpha_bar(steps: int, s: float = 0.008) -> torch.Tensor:
    """ᾱ_1..ᾱ_T of the cosine schedule with β clipped to 0.999 (Nichol & Dhariwal)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


class LogitDenoiser(nn.Module):
    """Runs the reverse chain; each action's logit is denoised from its own condition vector."""

    def __init__(self, cond_dim: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        ab = cosine_alpha_bar(steps)
        ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])
        alpha = ab / ab_prev
        # posterior q(x_{t-1} | x_t, x0) = N(c_x0 * x0 + c_xt * x_t, var)
        self.register_buffer("alpha_bar", ab.float())
        self.register_buffer("c_x0", (ab_prev.sqrt() * (1 - alpha) / (1 - ab)).float())
        self.register_buffer("c_xt", (alpha.sqrt() * (1 - ab_prev) / (1 - ab)).float())
        self.register_buffer("sigma", ((1 - ab_prev) / (1 - ab) * (1 - alpha)).sqrt().float())
        self.time = nn.Parameter(torch.zeros(steps, cond_dim))
        self.x_in = nn.Parameter(torch.randn(cond_dim) * 0.1)
        self.proj = nn.Linear(cond_dim, cond_dim)
        self.base = nn.Linear(cond_dim, 1)
        self.out = nn.Linear(cond_dim, 1)

    def forward(self, cond: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """cond [B, A, C] -> logits [B, A]; noise [T, B, A] (x_T, then z for steps T-1..1) or None."""
        base = self.base(cond).squeeze(-1)
        hidden = self.proj(cond)
        x = torch.zeros_like(base) if noise is None else noise[0]
        for t in range(self.steps - 1, -1, -1):
            h = torch.nn.functional.silu(x.unsqueeze(-1) * self.x_in + hidden + self.time[t])
            x0 = base + self.out(h).squeeze(-1)
            x = self.c_x0[t] * x0 + self.c_xt[t] * x
            if noise is not None and t > 0:
                x = x + self.sigma[t] * noise[self.steps - t]
        return x
