"""Settings for every test lane, applied before any test module imports torch."""

import os
from collections.abc import Iterator

import pytest

# One torch (OpenMP) thread per test process and per process it starts, as `aigc-edge train` and
# the demo's workers run: with a thread per core, OpenMP's spinning workers slow a short training
# test from 3 s to over 180 s as soon as anything else (an e2e worker, another build) takes a core.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _environment_stays_in_its_test() -> Iterator[None]:
    """`aigc-edge train` run in-process pins CPU kernels through the environment
    (aigc_policy.rl.kernels): undone after each test, so later tests and the processes they start
    see this machine's defaults."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
