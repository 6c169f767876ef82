"""Where each visible task stands in the orders the queue planner's rules put the queue in.

Task tokens attend to nodes, not to each other, so no token knows whether its task is the one
with the earliest deadline or the shortest service: a mean-pooled context cannot sort. The
queue planner (baselines/queue_planner.py), the teacher of the shipped edge-hetero student,
commits the first task of one of its rules' orders, so a student that is told each task's place
in those orders can copy the choice instead of guessing it.

Everything is read from the encoder's tensors (features.py), in torch, so the same function
builds these inputs in training (batched, padded) and in the exported graph (one state): the
policy inputs themselves are unchanged, and a policy trained without them exports as before.

Orders (smaller first), as queue_planner.RULES sorts them:
  spt        service on the fastest gang of the task's smallest runnable size
  edf        deadline, tasks that cannot make theirs (and those without one) after the rest
  slack^0.5  service x slack^0.5   (slack = time to the deadline after the service, >= 0.5 s)
  slack^1    service x slack
FIFO is the queue's own order (the `queue_position` field). Tasks with no valid placement go
last in every order. Per order: a flag for the first task and the rank / MAX_QUEUE.
"""

from __future__ import annotations

import torch

from aigc_policy.features import MAX_QUEUE, PAIR_FIELDS, TASK_FIELDS, TIME_SCALE_S

ORDERS = ("spt", "edf", "slack^0.5", "slack^1")
RANK_WIDTH = 2 * len(ORDERS)
_UNREACHABLE = 1e9  # a key past every real one: no deadline, or no valid placement
_NO_SERVICE_TLOG = 20.0  # squashed service of a task no gang can run (~1.5e10 s)
_SLACK, _HAS_DEADLINE = TASK_FIELDS.index("slack"), TASK_FIELDS.index("has_deadline")
_SERVICE_K, _VALID = PAIR_FIELDS.index("service_k"), PAIR_FIELDS.index("valid")


def _seconds(tlog: torch.Tensor) -> torch.Tensor:
    """Inverse of the encoder's (signed) log time squashing."""
    return torch.sign(tlog) * TIME_SCALE_S * (torch.exp(tlog.abs()) - 1.0)


def _smallest_gang_service_s(pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, Q, N, G, F] -> (service seconds on the fastest gang of the smallest valid size, runnable)."""
    valid = pairs[..., _VALID] > 0.5  # [B, Q, N, G]
    size_ok = valid.to(pairs.dtype).amax(2)  # [B, Q, G]: some anchor can run this size
    smallest = (size_ok > 0.5) & (size_ok.cumsum(-1) < 1.5)  # the first size that can
    usable = valid & smallest[:, :, None, :]
    tlog = torch.where(usable, pairs[..., _SERVICE_K], _NO_SERVICE_TLOG)
    runnable = size_ok.amax(-1) > 0.5
    return _seconds(tlog.amin(-1).amin(-1)), runnable


def _ranks(major: torch.Tensor, minor: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """Ranks [B, Q, K] of each task among the real ones by (major, minor, queue position), for K
    orders at once (keys [B, Q, K]): one set of graph operations for all of them."""
    position = torch.ones_like(minor[..., 0]).cumsum(-1)[:, :, None]
    mj, mi = major[:, None], major[:, :, None]  # [B, i, j, K]: does task j come before task i?
    nj, ni = minor[:, None], minor[:, :, None]
    earlier = (position[:, None] < position[:, :, None])
    before = (mj < mi) | ((mj == mi) & ((nj < ni) | ((nj == ni) & earlier)))
    if real is not None:
        before = before & real[:, None, :, None]
    return before.to(minor.dtype).sum(2)


def task_rank_features(tasks: torch.Tensor, pairs: torch.Tensor, task_mask: torch.Tensor | None) -> torch.Tensor:
    """tasks [B, Q, F], pairs [B, Q, N, G, F], task_mask [B, Q] (None: all real) -> [B, Q, RANK_WIDTH]:
    per order in ORDERS, the first-task flag then the rank / MAX_QUEUE."""
    service, runnable = _smallest_gang_service_s(pairs)
    has_deadline = tasks[..., _HAS_DEADLINE] > 0.5
    to_deadline = _seconds(tasks[..., _SLACK])
    hopeless = has_deadline & (to_deadline < service)
    late = (~runnable).to(service.dtype) * 2.0 + hopeless.to(service.dtype)
    log_slack = torch.log(torch.clamp(to_deadline - service, min=0.5))
    log_service = torch.log(torch.clamp(service, min=1e-3))
    major = torch.stack([torch.where(runnable, 0.0, _UNREACHABLE), late, late, late], -1)
    minor = torch.stack([
        service,
        torch.where(has_deadline, to_deadline, _UNREACHABLE),
        torch.where(has_deadline, log_service + 0.5 * log_slack, _UNREACHABLE),
        torch.where(has_deadline, log_service + log_slack, _UNREACHABLE),
    ], -1)
    rank = _ranks(major, minor, task_mask)
    return torch.stack([(rank < 0.5).to(tasks.dtype), rank * (1.0 / MAX_QUEUE)], -1).flatten(-2)
