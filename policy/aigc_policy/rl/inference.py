"""The exported graph: AgentNet's actor on one unpadded state, rewritten for decision latency.

`aigc-edge export` traces this module, not AgentNet.policy. It computes the same logits (the
export check and tests/integration/test_onnx_policy.py hold it to 1e-4 against AgentNet.policy)
with far fewer ONNX nodes per decision:

* one state, no batch or padding: masks of real tokens, masked means and their reshapes go, and
  head splits reshape with constant shapes instead of a Shape/Gather/Concat chain per tensor;
* linear maps that follow one another are folded at construction: the actor's condition
  projection into the chain's base and input projections (one [P -> 1 + C] product per action),
  the output biases into the base, the first chain step (x_T = 0) into a plain SiLU, and the
  steps head's first layer split so the context is added, not concatenated to every task;
* the chain runs once, channel-first, over the wait action and the placements in [Q, N, G]
  order; only the final logits are reordered to the task-gang-anchor layout of
  aigc_policy.actions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import linear, silu

from aigc_policy.features import N_GANG
from aigc_policy.rl.networks import NEG, AgentNet, Attention, attend, count_features
from aigc_policy.rl.queue_order import task_rank_features


def _attend(block: Attention, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """Attention.forward for unbatched tokens [T, W] with every context token real."""
    heads, width = block.heads, block.q.out_features  # ints, not traced shapes: no Shape ops
    d = width // heads
    q = block.q(x).reshape(-1, heads, d).transpose(0, 1)  # [H, T, d]
    kv = block.kv(ctx).reshape(-1, 2, heads, d).permute(1, 2, 0, 3)  # [2, H, S, d]
    return block.finish(x, attend(q, kv[0], kv[1], block.scale).transpose(0, 1).reshape(-1, width))


class InferencePolicy(nn.Module):
    """(tasks [1, Q, F], nodes [1, N, F], pairs [1, Q, N, G, F], action_mask [1, A], steps_mask
    [1, Q, S]) -> masked logits [1, A], masked steps logits [1, Q, S]; the chain's deterministic
    path (zero noise)."""

    def __init__(self, net: AgentNet) -> None:
        super().__init__()
        self.net = net.eval()
        cfg, head = net.cfg, net.actor.head
        self.bound = cfg.logit_bound
        chain = net.actor.chain
        with torch.no_grad():
            if chain is None:
                w_first, b_first = net.actor.out.weight, net.actor.out.bias  # [1, P]: the logit
            else:
                # cond = Wc h + bc feeds base = Wb cond + bb and hidden = Wp cond + bp: fold both
                wc, bc = net.actor.cond.weight, net.actor.cond.bias
                w_cb = torch.cat([chain.base.weight, chain.proj.weight])  # [1 + C, C]
                b_cb = torch.cat([chain.base.bias + chain.out.bias, chain.proj.bias])
                w_first, b_first = w_cb @ wc, w_cb @ bc + b_cb
        # column vectors: every chain tensor is [channels, actions]
        self.register_buffer("w_first", w_first.detach().clone())
        self.register_buffer("b_first", b_first.detach().clone()[:, None])
        if chain is not None:
            self.register_buffer("time", chain.time.detach().clone()[:, :, None])
            self.register_buffer("x_in", chain.x_in.detach().clone()[:, None])
            self.register_buffer("w_out", chain.out.weight.detach().clone())
            self.register_buffer("c_x0", chain.c_x0.clone())
            self.register_buffer("c_xt", chain.c_xt.clone())
        self.chain_steps = 0 if chain is None else chain.steps
        self.register_buffer("neg", torch.tensor(NEG))
        self.head = head
        # steps head: its first layer on cat([task, ctx]) split into a task part and a context part
        first_steps = head.steps[0]
        self.register_buffer("w_steps_task", first_steps.weight[:, : cfg.width].detach().clone())
        self.register_buffer("w_steps_ctx", first_steps.weight[:, cfg.width :].detach().clone())

    def _tokens(
        self, tasks: torch.Tensor, nodes: torch.Tensor, pairs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Task and node tokens [Q, W], [N, W] and the context [W] from tasks [1, Q, F], nodes [N, F]."""
        enc = self.net.encoder
        if enc.task_ranks:
            tasks = torch.cat([tasks, task_rank_features(tasks, pairs, None)], -1)
        t = enc.task_in(tasks[0]) + enc.type_emb[0]
        n = enc.node_in(nodes) + enc.type_emb[1]
        if enc.node_attn is not None and enc.task_attn is not None:
            n = _attend(enc.node_attn, n, n)
            t = _attend(enc.task_attn, t, n)
        pooled = [t.mean(0), n.mean(0)]
        if enc.pool_counts:  # counted from the tokens, so the queue and node axes stay dynamic
            pooled.append(count_features(torch.ones_like(t[:, 0]).sum(), torch.ones_like(n[:, 0]).sum(), enc.count_flags))
        ctx = enc.pool(torch.cat(pooled, -1))
        return t, n, ctx

    def _action_hidden(self, t: torch.Tensor, n: torch.Tensor, ctx: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """PairHead's per-action hidden, flattened to [Q*N*G, P] (task, node, gang order)."""
        h = self.head.per_action(t[None], n[None], ctx[None], pairs)  # pairs keep their batch axis: no copy
        return h.reshape(-1, self.head.task.out_features)

    def _first(self, hidden: torch.Tensor) -> torch.Tensor:
        """Per-action hiddens [A, P] -> the chain's (base, condition) inputs, channel-first [1 + C, A]
        (the logit itself [1, A] without a chain): ONNX Runtime's broadcasts are slow over a last
        axis of C = 4 values and fast over one of A."""
        return self.w_first @ hidden.T + self.b_first

    def _chain(self, first: torch.Tensor) -> torch.Tensor:
        """LogitDenoiser.forward with x_T = 0 and no noise: [1 + C, A] -> logits [1, A]."""
        base, cond = first[:1], first[1:]
        x = None
        for t in range(self.chain_steps - 1, -1, -1):
            pre = cond + self.time[t] if x is None else cond + self.time[t] + self.x_in * x
            x0 = base + self.w_out @ silu(pre)
            x = self.c_x0[t] * x0 if x is None else self.c_x0[t] * x0 + self.c_xt[t] * x
        return base if x is None else x

    def _bounded(self, x: torch.Tensor) -> torch.Tensor:
        return self.bound * torch.tanh(x * (1.0 / self.bound)) if self.bound > 0 else x

    def forward(
        self,
        tasks: torch.Tensor,
        nodes: torch.Tensor,
        pairs: torch.Tensor,
        action_mask: torch.Tensor,
        steps_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t, n, ctx = self._tokens(tasks, nodes[0], pairs)
        wait, place = self.head.wait(ctx)[None], self._action_hidden(t, n, ctx, pairs)
        x = self._chain(torch.cat([self._first(wait), self._first(place)], 1))  # one chain: wait, then places
        place = x[:, 1:].reshape(t.shape[0], -1, N_GANG).transpose(1, 2).reshape(1, -1)  # [Q, N, G] -> task-gang-anchor
        logits = self._bounded(torch.cat([x[:, :1], place], 1))
        steps_hidden = t @ self.w_steps_task.T + linear(ctx, self.w_steps_ctx, self.head.steps[0].bias)
        steps = self._bounded(self.head.steps[2](silu(steps_hidden)))[None]
        return torch.where(action_mask, logits, self.neg), torch.where(steps_mask, steps, self.neg)
