"""`aigc-edge bench` end to end: results.json keys, plots, and one-line errors with exit 2."""

import json
import subprocess
import sys

import pytest
from aigc_policy.cli import main

KEYS = {"tasks", "mean_response_s", "p50_response_s", "p95_response_s", "p99_response_s", "mean_wait_s",
        "mean_service_s", "slo_attainment", "mean_quality", "cold_starts", "utilisation", "ci95_mean_response_s"}


def test_bench_writes_results_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["bench", "--scenario", "eat-reference", "--policies", "eft,random,eat-greedy-ref,lower-bound",
                 "--episodes", "2", "--seed", "1", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["scenario"] == "eat-reference"
    assert set(results["policies"]) == {"eft", "random", "eat-greedy-ref", "lower-bound"}
    for metrics in results["policies"].values():
        assert set(metrics) >= KEYS
        assert 0 <= metrics["slo_attainment"] <= 1 and 0 <= metrics["utilisation"] <= 1
        assert metrics["tasks"] == 32
    assert (out / "response_cdf.png").stat().st_size > 0
    assert "| eft |" in capsys.readouterr().out


def test_rate_sweep_and_node_scaling(tmp_path):
    out = tmp_path / "sweep"
    code = main(["bench", "--scenario", "edge-hetero", "--nodes", "4", "--rate", "0.5,1", "--policies",
                 "eft,least-loaded", "--episodes", "1", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["nodes"] == 4 and set(results["per_rate"]) == {"0.5", "1"}
    assert set(results["per_rate"]["1"]["eft"]) >= KEYS
    assert (out / "metrics_vs_rate.png").stat().st_size > 0


def test_trace_replay(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_s": 0, "model": "sd15", "width": 512, "height": 512, "steps": 20}\n'
                     '{"arrival_s": 1.5, "model": "sdxl", "width": 1024, "height": 1024, "steps": null}\n')
    out = tmp_path / "trace-out"
    assert main(["bench", "--trace", str(trace), "--policies", "eft", "--episodes", "1", "--out", str(out),
                 "--no-plots"]) == 0
    assert json.loads((out / "results.json").read_text())["policies"]["eft"]["tasks"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policies", "nope"], "unknown policy 'nope'"),
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--rate", "-1"], "--rate values must be positive"),
        (["--rate", "0.5,fast"], "--rate must be a number or a comma-separated list of numbers, got '0.5,fast'"),
        (["--nodes", "99"], "2..64"),
        (["--policies", "spt:0"], "--policies spt:0: spt:W needs W >= 1"),
        (["--policies", "rollout:eft/horizon=soon"], "rollout: horizon='soon' is not a number"),
        (["--policies", "rollout:eft/depth=2"], "unknown option 'depth'"),
        (["--policies", "rollout:rollout"], "rollout cannot use itself"),
        (["--policies", "rollout:nope"], "unknown policy 'nope'"),
        (["--policies", "offline-search:evals=0"], "offline-search: evals=0 is out of range"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    assert main(["bench", "--episodes", "1", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_an_out_folder_that_cannot_be_made_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["bench", "--policies", "eft", "--episodes", "1", "--out", str(blocker / "results")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"aigc-edge bench: error: {blocker / 'results'}: Not a directory"


def test_malformed_trace_line_exits_2_with_file_and_line(tmp_path):
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"arrival_s": 0, "model": "sd15", "width": 512, "height": 512}\n'
                     '{"arrival_s": 1, "model": "sd15", "width": 512, "height": 512, "colour": 1}\n')
    entry = "import sys; from aigc_policy.cli import main; sys.exit(main(sys.argv[1:]))"  # as the console script
    proc = subprocess.run([sys.executable, "-c", entry, "bench", "--trace", str(trace), "--policies",
                           "eft", "--episodes", "1", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{trace}:2: unknown field(s) colour" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
