"""Networks of the learned schedulers: a token encoder shared by the actor and the twin critics.

Inputs are batches of features.EncodedState padded to a common queue length Q and node count N
(`task_mask`, `node_mask` mark real tokens). Outputs follow aigc_policy.actions: flat action
values [B, 1 + Q*G*N] (wait first, then task-major, gang, anchor) and steps values [B, Q, S].

Variants (ALGOS): `eat` = attention encoder + diffusion actor; `dsac` = no attention (tokens
embedded independently, context from pooled tokens) + diffusion actor; `sac` = no attention,
the actor's logits come straight from the pair head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from aigc_policy.features import MAX_QUEUE, NODE_FEATURES, PAIR_FEATURES, TASK_FEATURES
from aigc_policy.placement import STEP_BUCKETS
from aigc_policy.rl.diffusion import LogitDenoiser
from aigc_policy.rl.queue_order import RANK_WIDTH, task_rank_features

NEG = -1e9  # masked logit: finite so that 0 * NEG stays 0 in expectations


@dataclass(frozen=True)
class NetConfig:
    attention: bool = True
    diffusion: bool = True
    width: int = 64
    pair_width: int = 32
    heads: int = 4
    diffusion_steps: int = 6
    cond_width: int = 16
    # Defaults reproduce the first shipped policy; ALGOS below is the lean, bounded form.
    logit_bound: float = 0.0  # > 0: logits = bound * tanh(raw / bound), so entropy never dies
    lean_actor: bool = False  # actor pair head without its second per-action layer
    critic_pair_width: int = 0  # 0: pair_width (critics are not in the exported graph)
    pool_counts: bool = False  # the pooled context also reads log1p of the task and node counts
    count_flags: bool = False  # with pool_counts, also one flag per threshold: #tasks > k for k = 1..MAX_QUEUE
    task_ranks: bool = False  # task tokens also read their place in the queue planner's orders (queue_order.py)

    @property
    def count_width(self) -> int:
        return (2 + (MAX_QUEUE if self.count_flags else 0)) if self.pool_counts else 0

    @property
    def task_width(self) -> int:
        return TASK_FEATURES + (RANK_WIDTH if self.task_ranks else 0)

    def to_dict(self) -> dict:
        return asdict(self)


_LEAN = {"width": 32, "heads": 2, "pair_width": 16, "cond_width": 4, "critic_pair_width": 32,
         "diffusion_steps": 3, "logit_bound": 10.0, "lean_actor": True}
ALGOS: dict[str, NetConfig] = {
    "eat": NetConfig(attention=True, diffusion=True, **_LEAN),
    "dsac": NetConfig(attention=False, diffusion=True, **_LEAN),
    "sac": NetConfig(attention=False, diffusion=False, **_LEAN),
}


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class Attention(nn.Module):
    """Multi-head attention with a key padding mask, residual and LayerNorm, then a feed-forward."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** 0.5
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.o = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width)
        self.ff = _mlp(width, 2 * width, width)
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        # unflatten on the feature axis only: batch and token axes stay dynamic in ONNX
        q = self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        kv = self.kv(ctx).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)
        out = attend(q, kv[0], kv[1], self.scale, ~ctx_mask[:, None, None, :])
        return self.finish(x, out.transpose(1, 2).flatten(-2))

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Output projection, residuals, LayerNorms and feed-forward around the attended values."""
        x = self.norm1(x + self.o(attended))
        return self.norm2(x + self.ff(x))


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, masked: torch.Tensor | None = None
) -> torch.Tensor:
    """Dot-product attention per head, scores divided by `scale` (sqrt of the head width: a number,
    not read from q's shape, so an exported graph does no shape arithmetic for it); `masked` marks
    context tokens to ignore."""
    scores = q @ k.transpose(-1, -2) / scale
    if masked is not None:
        scores = scores.masked_fill(masked, NEG)
    return scores.softmax(-1) @ v


def count_features(n_tasks: torch.Tensor, n_nodes: torch.Tensor, flags: bool) -> torch.Tensor:
    """What the context reads of the token counts (float tensors of one shape [...]): [..., 2]
    log(1 + count) of tasks and nodes, with `flags` then [..., MAX_QUEUE] flags #tasks > k. A log
    count puts 15 and 16 waiting tasks 0.06 apart; a rule that holds tasks until the window is
    full needs a sharp step there."""
    out = torch.log1p(torch.stack([n_tasks, n_nodes], -1))
    if flags:
        out = torch.cat([out, (n_tasks[..., None] > torch.arange(1, MAX_QUEUE + 1, dtype=out.dtype, device=out.device)).to(out.dtype)], -1)
    return out


class TokenEncoder(nn.Module):
    """Embeds task and node tokens; with attention, nodes attend to nodes and tasks to nodes."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        w = cfg.width
        self.task_in = _mlp(cfg.task_width, w, w)
        self.node_in = _mlp(NODE_FEATURES, w, w)
        self.type_emb = nn.Parameter(torch.randn(2, w) * 0.02)
        self.node_attn = Attention(w, cfg.heads) if cfg.attention else None
        self.task_attn = Attention(w, cfg.heads) if cfg.attention else None
        self.pool_counts, self.count_flags, self.task_ranks = cfg.pool_counts, cfg.count_flags, cfg.task_ranks
        self.pool = _mlp(2 * w + cfg.count_width, w, w)

    def forward(
        self, tasks: torch.Tensor, nodes: torch.Tensor, pairs: torch.Tensor, task_mask: torch.Tensor,
        node_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.task_ranks:
            tasks = torch.cat([tasks, task_rank_features(tasks, pairs, task_mask)], -1)
        t = self.task_in(tasks) + self.type_emb[0]
        n = self.node_in(nodes) + self.type_emb[1]
        if self.node_attn is not None and self.task_attn is not None:
            n = self.node_attn(n, n, node_mask)
            t = self.task_attn(t, n, node_mask)
        pooled = [masked_mean(t, task_mask), masked_mean(n, node_mask)]
        if self.pool_counts:  # a mean cannot count, and when to hold a task depends on how many wait
            pooled.append(count_features(task_mask.sum(1).to(t.dtype), node_mask.sum(1).to(t.dtype), self.count_flags))
        ctx = self.pool(torch.cat(pooled, -1))
        return t, n, ctx


class PairHead(nn.Module):
    """Per-action hidden vectors h[b, i, j, g] from the task, node, pair and context embeddings.

    Factorised: task, node and context are projected once per token and broadcast-added to the
    pair projection, so the only per-action work is one [F -> P] product and the activation(s);
    `lean` drops the second per-action layer (the actor's chain adds its own non-linearity).
    """

    def __init__(self, cfg: NetConfig, pair_width: int | None = None, lean: bool = False) -> None:
        super().__init__()
        w, p = cfg.width, pair_width or cfg.pair_width
        self.task = nn.Linear(w, p)
        self.node = nn.Linear(w, p, bias=False)
        self.pair = nn.Linear(PAIR_FEATURES, p, bias=False)
        self.ctx = nn.Linear(w, p, bias=False)
        self.hidden = None if lean else nn.Linear(p, p)
        self.wait = _mlp(w, w, p)
        self.steps = _mlp(2 * w, w, STEP_BUCKETS)

    def per_action(self, t: torch.Tensor, n: torch.Tensor, ctx: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Hidden [B, Q, N, G, P] of every (task, anchor, gang size); task and node terms meet at
        [Q, N] before the per-gang broadcast."""
        tn = (self.task(t) + self.ctx(ctx).unsqueeze(1))[:, :, None, :] + self.node(n)[:, None, :, :]
        h = torch.nn.functional.silu(tn.unsqueeze(3) + self.pair(pairs))
        return h if self.hidden is None else torch.nn.functional.silu(self.hidden(h))

    def forward(
        self, t: torch.Tensor, n: torch.Tensor, ctx: torch.Tensor, pairs: torch.Tensor,
        project: nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> action hidden [B, A, P] (wait first; [B, A, P'] after `project`, a per-action map
        applied before the task-gang-anchor reordering so the transpose moves P' values, not P),
        steps values [B, Q, S]."""
        h = self.per_action(t, n, ctx, pairs)
        wait = self.wait(ctx).unsqueeze(1)
        if project is not None:
            h, wait = project(h), project(wait)
        place = h.transpose(2, 3).flatten(1, 3)  # [B, Q*G*N, P]
        steps = self.steps(torch.cat([t, ctx.unsqueeze(1).expand_as(t)], -1))
        return torch.cat([wait, place], 1), steps


class Actor(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.head = PairHead(cfg, lean=cfg.lean_actor)
        if cfg.diffusion:
            self.cond = nn.Linear(cfg.pair_width, cfg.cond_width)
            self.chain: LogitDenoiser | None = LogitDenoiser(cfg.cond_width, cfg.diffusion_steps)
        else:
            self.out = nn.Linear(cfg.pair_width, 1)
            self.chain = None

    def forward(
        self, t: torch.Tensor, n: torch.Tensor, ctx: torch.Tensor, pairs: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chain is None:
            logits, steps = self.head(t, n, ctx, pairs, project=self.out)
            return logits.squeeze(-1), steps
        cond, steps = self.head(t, n, ctx, pairs, project=self.cond)
        return self.chain(cond, noise), steps


class Critic(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        width = cfg.critic_pair_width or cfg.pair_width
        self.head = PairHead(cfg, pair_width=width)
        self.out = nn.Linear(width, 1)

    def forward(
        self, t: torch.Tensor, n: torch.Tensor, ctx: torch.Tensor, pairs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, steps = self.head(t, n, ctx, pairs, project=self.out)
        return q.squeeze(-1), steps


class AgentNet(nn.Module):
    """Shared encoder, actor and twin critics. The critics train the encoder; the actor reads it."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TokenEncoder(cfg)
        self.actor = Actor(cfg)
        self.critics = nn.ModuleList([Critic(cfg), Critic(cfg)])

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encoder(batch["tasks"], batch["nodes"], batch["pairs"], batch["task_mask"], batch["node_mask"])

    def policy(
        self,
        batch: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        detach_encoder: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked action logits [B, A] and steps logits [B, Q, S]."""
        t, n, ctx = self.encode(batch)
        if detach_encoder:
            t, n, ctx = t.detach(), n.detach(), ctx.detach()
        logits, steps = self.actor(t, n, ctx, batch["pairs"], noise)
        bound = self.cfg.logit_bound
        if bound > 0:
            logits, steps = bound * torch.tanh(logits / bound), bound * torch.tanh(steps / bound)
        return (
            logits.masked_fill(~batch["action_mask"], NEG),
            steps.masked_fill(~batch["steps_mask"], NEG),
        )

    def q_values(self, batch: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        t, n, ctx = self.encode(batch)
        return [critic(t, n, ctx, batch["pairs"]) for critic in self.critics]

    def chain_noise(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        chain = self.actor.chain
        if chain is None:
            return None
        return torch.randn(chain.steps, *batch["action_mask"].shape)
