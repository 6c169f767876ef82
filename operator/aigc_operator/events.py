"""Kubernetes Events for decisions, posted off the placement path.

Events are best effort (they expire within the hour); the same facts go into conditions. A
bounded queue keeps a burst from slowing placements: when it is full, Events are dropped and
counted in the health payload. Normal Events (Scheduled) also pass a token bucket: each is an
API-server write as costly as the placement itself, so at hundreds of placements per second they
would halve the rate a small control plane sustains. Warnings are never rate-limited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

Poster = Callable[[dict[str, Any], str, str, str, datetime], None]


class TokenBucket:
    """`rate` tokens per second, up to `burst` saved; rate 0 never grants one."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = burst, clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class EventRecorder:
    def __init__(
        self, post: Poster, executor: Executor, normal_per_s: float = 20.0, capacity: int = 2000
    ) -> None:
        self._post = post
        self._executor = executor
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str, datetime]] = asyncio.Queue(capacity)
        self._normal = TokenBucket(normal_per_s, burst=2 * normal_per_s)
        self.dropped = 0  # the queue was full
        self.rate_limited = 0  # Normal Events over the rate

    def record(self, task: dict[str, Any], event_type: str, reason: str, message: str, now: datetime) -> None:
        if event_type == NORMAL and not self._normal.take():
            self.rate_limited += 1
            return
        try:
            self._queue.put_nowait((task, event_type, reason, message, now))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            try:
                await loop.run_in_executor(self._executor, self._post, *item)
            except Exception as exc:  # e.g. the task was deleted meanwhile
                log.debug("event %s not posted: %s", item[2], exc)
