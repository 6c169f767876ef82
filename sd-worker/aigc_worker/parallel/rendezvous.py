"""Forming a gang's process group: rank 0 hosts a TCPStore, the others join by its address.

Every wait is bounded: a member that never arrives makes the others' `join` raise GangError
after `timeout` instead of hanging, and the attempt can be failed with a clear reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist
from aigc_api.status import RENDEZVOUS_FAILED
from torch.distributed import PrefixStore, TCPStore

from aigc_worker.parallel.layout import GangLayout
from aigc_worker.parallel.patch import PatchGroup

GANG_MEMBER_LOST = "GangMemberLost"
COLLECTIVE_ERROR_MARKERS = ("gloo", "NCCL", "Connection closed", "Connection reset", "timed out", "Timed out")


class GangError(RuntimeError):
    """The gang could not form, or lost a member while running (`reason` is CamelCase)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def open_store(bind_host: str, timeout_s: float, port: int = 0) -> TCPStore:
    """Rank 0's store (port 0: a free one); advertise `<reachable host>:<store.port>` to the others."""
    return TCPStore(
        bind_host, port, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=timeout_s)
    )


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class Gang:
    layout: GangLayout
    patches: PatchGroup | None


@contextmanager
def joined_gang(
    layout: GangLayout,
    store: TCPStore | None,
    address: str,
    namespace: str,
    backend: str,
    timeout_s: float,
    still_wanted: Callable[[], str | None] | None = None,
) -> Iterator[Gang]:
    """The default process group for one gang run; torn down on exit whatever happened.

    `store` is rank 0's own (from `open_store`); other ranks pass None and connect to `address`.
    `namespace` (task and attempt) keeps keys of successive gangs on one store apart.
    With `still_wanted`, members first wait for each other for as long as it returns None (see
    `await_members`), so `timeout_s` only bounds forming the group once everyone is there.
    """
    timeout = timedelta(seconds=timeout_s)
    try:
        if store is None:
            host, port = parse_address(address)
            store = TCPStore(host, port, is_master=False, timeout=timeout)
        if still_wanted is not None:
            await_members(store, namespace, layout.rank, layout.world_size, still_wanted)
        dist.init_process_group(
            backend,
            store=PrefixStore(namespace, store),
            rank=layout.rank,
            world_size=layout.world_size,
            timeout=timeout,
        )
        patches = None
        # new_group is collective: every rank creates every patch group, in the same order.
        for cfg_index in range(layout.cfg_degree if layout.patch_degree > 1 else 0):
            ranks = layout.patch_group_ranks(cfg_index)
            group = dist.new_group(ranks)
            if layout.rank in ranks:
                patches = PatchGroup(group, ranks.index(layout.rank), len(ranks))
    except (RuntimeError, dist.DistError) as exc:
        _leave()
        raise GangError(RENDEZVOUS_FAILED, f"gang of {layout.world_size} did not form: {exc}") from exc
    try:
        yield Gang(layout, patches)
        dist.barrier()
    except Exception as exc:
        if is_collective_failure(exc):
            raise GangError(GANG_MEMBER_LOST, f"gang member lost during generation: {exc}") from exc
        raise
    finally:
        _leave()


def await_members(
    store: TCPStore,
    namespace: str,
    rank: int,
    world_size: int,
    still_wanted: Callable[[], str | None],
    poll_s: float = 0.2,
    check_every_s: float = 5.0,
) -> None:
    """Announce this rank and wait until every rank of the gang has announced itself.

    Members reach a gang task at different times: each runs its node's queue in placement order,
    so one may still be busy with earlier work. There is no fixed deadline; instead, every
    `check_every_s` `still_wanted()` is asked, and a message from it (the attempt ended, a member's
    claim stopped heartbeating) fails the wait with RendezvousFailed.
    """
    prefix = f"{namespace}/arrived/"
    store.set(prefix + str(rank), "1")
    keys = [prefix + str(r) for r in range(world_size)]
    next_check = time.monotonic() + check_every_s
    while not store.check(keys):
        if time.monotonic() >= next_check:
            problem = still_wanted()
            if problem is not None:
                raise GangError(RENDEZVOUS_FAILED, problem)
            next_check = time.monotonic() + check_every_s
        time.sleep(poll_s)


def is_collective_failure(exc: BaseException) -> bool:
    # gloo reports a dead or silent peer as a plain RuntimeError; only its text tells it apart.
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return type(exc) is RuntimeError and any(marker in text for marker in COLLECTIVE_ERROR_MARKERS)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
