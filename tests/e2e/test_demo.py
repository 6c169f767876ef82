"""`aigc-edge demo` as `make demo` runs it, on its own control plane, with a small burst.

Until the demo served (stand-in) GPU metrics for its fake nodes and waited for Prometheus to
hold them, every task met stale metrics and was placed by the fallback policy (eft, reason
MetricsStale): the demo never showed the policy it names.
"""

from __future__ import annotations

import subprocess

import pytest
from aigc_operator.stack import CLI

pytestmark = pytest.mark.e2e


def test_the_demo_burst_succeeds_and_is_placed_by_the_shipped_policy(tmp_path):
    done = subprocess.run(
        [*CLI, "demo", "--tasks", "3", "--max-side", "64", "--timeout", "300", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=540, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    header, *rows = (
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in done.stdout.splitlines()
        if line.startswith(("| task ", "| demo-"))
    )
    tasks = [dict(zip(header, row, strict=True)) for row in rows]
    assert [t["model"] for t in tasks] == ["sd-turbo", "sd15", "sdxl"]
    assert all(t["phase"] == "Succeeded" and t["result"].endswith(".png") for t in tasks), tasks
    assert [t["placed by"] for t in tasks] == ["eat"] * 3, tasks
    assert int(tasks[2]["gang"]) >= 2  # the SDXL example only allows 2- or 4-node gangs
