"""aigc_policy.allocator: a process that retains freed memory encodes without page faults.

Each case runs in a fresh interpreter, since the allocator setting lasts for the process. The
count is of minor page faults (getrusage), not of time, so the test does not depend on load.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ENCODE_LOOP = """
import json, resource, sys
import numpy as np
from aigc_policy.allocator import retain_freed_memory
from aigc_policy.features import Encoder
from aigc_policy.scenario import load_scenario
from aigc_policy.synthetic import next_snapshot, random_snapshot

tuned = retain_freed_memory() if sys.argv[1] == "retain" else None
scenario = load_scenario("edge-hetero")
rng = np.random.default_rng(0)
states = [random_snapshot(rng, scenario.perf, 64, 32, scenario.gang_sizes)]
for _ in range(299):
    states.append(next_snapshot(rng, states[-1]))
encoder = Encoder()
for snap in states[:50]:
    encoder.encode(snap)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for snap in states[50:]:
    encoder.encode(snap)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 250
print(json.dumps({"tuned": tuned, "faults_per_encode": faults}))
"""


def _encode_faults(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", ENCODE_LOOP, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retaining_freed_memory_removes_the_encoders_page_faults():
    default, retained = _encode_faults("default"), _encode_faults("retain")
    assert retained["tuned"] is True
    # glibc's defaults fault in fresh pages for the 64 x 32 pair arrays on most decisions
    assert default["faults_per_encode"] > 20, default
    assert retained["faults_per_encode"] < 2, retained


def test_without_glibc_mallopt_nothing_changes(monkeypatch):
    """musl and macOS have no usable mallopt: the call reports False instead of failing."""
    import ctypes

    from aigc_policy import allocator

    class NoMallopt:  # a C library without the symbol, as ctypes presents it
        def __getattr__(self, name):
            raise AttributeError(name)

    monkeypatch.setattr(ctypes, "CDLL", lambda _name: NoMallopt())
    assert allocator.retain_freed_memory() is False
