"""Tiny pipelines of every kind through the catalog path, and gang parity with one node.

Gang members are separate processes talking gloo on 127.0.0.1, as workers on separate nodes do.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aigc_api.catalog import load_catalog
from aigc_worker.pipelines import ImageJob, Placement, generate, load_model
from aigc_worker.tinymodels import CATALOG_FILE, TINY_KINDS, tiny_model_name, write_tiny_models

HERE = Path(__file__).parent
PARITY_TOLERANCE = 1e-3


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-models")
    write_tiny_models(out)
    return out / CATALOG_FILE


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_each_kind_loads_through_the_catalog_and_generates(tiny_catalog: Path, kind: str) -> None:
    entry = load_catalog(tiny_catalog).get(tiny_model_name(kind))
    model = load_model(entry, Placement())
    generated = generate(model, ImageJob("a photo of the cat", "", 64, 64, 4, seed=1))
    assert generated.image.shape == (64, 64, 3)
    assert np.isfinite(generated.image).all() and generated.image.std() > 0
    assert generated.step_seconds > 0  # speed is measured by bench/worker_overhead.py, not asserted here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_gang(
    catalog: Path, model: str, world: int, out: Path, dying_rank: int | None = None
) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for rank in range(world):
        args = [
            sys.executable,
            str(HERE / "gang_member.py"),
            str(catalog),
            model,
            str(rank),
            str(world),
            str(port),
            str(out),
        ]
        if rank == dying_rank:
            args.append("die")
        procs.append(
            subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        )
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def single_node_image(tiny_catalog: Path) -> np.ndarray:
    model = load_model(load_catalog(tiny_catalog).get(tiny_model_name("sd15")), Placement())
    return generate(model, ImageJob("a photo of the cat", "", 64, 64, 4, seed=7)).image


@pytest.mark.parametrize("world", [2, 4])
def test_gang_matches_single_node_exactly(
    tiny_catalog: Path, single_node_image: np.ndarray, tmp_path: Path, world: int
) -> None:
    model = tiny_model_name("sd15")  # guidance 7.5: k=2 splits CFG, k=4 adds two row patches
    together = tmp_path / f"k{world}.npy"
    for result in _run_gang(tiny_catalog, model, world, together):
        assert result.returncode == 0, result.stderr[-2000:]
    error = float(np.abs(single_node_image - np.load(together)).max())
    print(f"parity k={world}: max abs error {error:.2e}")
    assert error < PARITY_TOLERANCE


def test_killed_gang_member_fails_the_others_instead_of_hanging(tiny_catalog: Path, tmp_path: Path) -> None:
    results = _run_gang(tiny_catalog, tiny_model_name("sd15"), 2, tmp_path / "x.npy", dying_rank=1)
    assert results[1].returncode == 3
    assert results[0].returncode == 4 and "GangError GangMemberLost" in results[0].stdout, results[0].stderr[
        -2000:
    ]


def test_worker_profile_measures_this_node_into_a_scenario_class(tiny_catalog: Path, tmp_path: Path, capsys) -> None:
    import yaml
    from aigc_policy.cli import main

    model, out = tiny_model_name("sd15"), tmp_path / "class.yaml"
    base = ["worker", "profile", "--catalog", str(tiny_catalog), "--out", str(out), "--class-name", "cpu-test",
            "--sizes", "64x64,32x48", "--steps", "2", "--repeats", "1"]
    assert main([*base, "--models", model]) == 0
    measured = yaml.safe_load(out.read_text())["classes"]["cpu-test"]
    assert set(measured["step_s"]) == {model} and set(measured["step_s"][model]) == {"64x64", "32x48"}
    assert all(seconds[1] > 0 for seconds in measured["step_s"][model].values())
    assert measured["load_s"][model][1] > 0 and measured["vram_gb"] > 0
    assert main([*base, "--models", f"{model},no-such-model"]) == 2
    assert f"--models: no-such-model not in {tiny_catalog}" in capsys.readouterr().err
