"""Event rate limiting (Normal Events pass a token bucket, Warnings always go out) and kopf's
API retry schedule."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sized
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from aigc_operator.events import NORMAL, WARNING, EventRecorder, TokenBucket
from aigc_operator.handlers import RetryForever


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=4.0, clock=clock)
    assert [bucket.take() for _ in range(5)] == [True, True, True, True, False]
    clock.t = 0.5  # one token back
    assert bucket.take() and not bucket.take()
    clock.t = 100.0  # refills up to the burst, not beyond
    assert sum(bucket.take() for _ in range(10)) == 4


def test_zero_rate_never_grants() -> None:
    assert not TokenBucket(rate=0.0, burst=0.0).take()


def test_normal_events_are_rate_limited_warnings_never() -> None:
    posted: list[str] = []

    async def scenario() -> EventRecorder:
        with ThreadPoolExecutor(1) as pool:
            recorder = EventRecorder(lambda *item: posted.append(item[2]), pool, normal_per_s=5.0)
            now, task = datetime.now(UTC), {"metadata": {"name": "t", "namespace": "ns"}}
            for _ in range(100):
                recorder.record(task, NORMAL, "Scheduled", "placed", now)
                recorder.record(task, WARNING, "Fallback", "placed by the fallback", now)
            poster = asyncio.create_task(recorder.run())
            while len(posted) < 110:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # nothing more arrives
            poster.cancel()
        return recorder

    recorder = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert posted.count("Fallback") == 100  # every Warning
    assert 10 <= posted.count("Scheduled") <= 11  # a burst of 2 x 5, plus what refilled meanwhile
    assert recorder.rate_limited == 100 - posted.count("Scheduled") and recorder.dropped == 0


def test_kopf_retries_api_errors_forever_and_afresh_for_every_request() -> None:
    backoffs = RetryForever(schedule=(1, 2), every_s=30.0)
    first = list(itertools.islice(backoffs, 6))
    assert first == [1, 2, 30.0, 30.0, 30.0, 30.0]
    assert list(itertools.islice(backoffs, 3)) == [1, 2, 30.0]  # a new request starts over
    assert not isinstance(backoffs, Sized)  # kopf counts no last attempt for an unsized schedule
