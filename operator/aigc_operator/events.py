"""Kubernetes Events for decisions, posted off the placement path.

Events are best effort (they expire within the hour); the same facts go into conditions. A
bounded queue keeps a burst from slowing placements: when it is full, Events are dropped and
counted in the health payload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

Poster = Callable[[dict[str, Any], str, str, str, datetime], None]


class EventRecorder:
    def __init__(self, post: Poster, executor: Executor, capacity: int = 2000) -> None:
        self._post = post
        self._executor = executor
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str, datetime]] = asyncio.Queue(capacity)
        self.dropped = 0

    def record(self, task: dict[str, Any], event_type: str, reason: str, message: str, now: datetime) -> None:
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
