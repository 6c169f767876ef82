"""Export and ONNX Runtime: parity with torch, dynamic sizes, metadata, the shipped policy."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from aigc_policy import policies  # noqa: E402
from aigc_policy.actions import ACTION_LAYOUT  # noqa: E402
from aigc_policy.features import FEATURE_SCHEMA_VERSION  # noqa: E402
from aigc_policy.onnx_policy import OnnxPolicy, PolicyFileError, default_policy_path  # noqa: E402
from aigc_policy.rl.export import export_onnx, max_abs_diff, sample_states  # noqa: E402
from aigc_policy.rl.kernels import PORTABLE  # noqa: E402
from aigc_policy.rl.networks import ALGOS, AgentNet  # noqa: E402
from aigc_policy.scenario import load_scenario  # noqa: E402
from aigc_policy.sim import Simulator  # noqa: E402

SIZES = ((4, 10), (16, 16), (64, 32))  # (nodes, queue)
METADATA = {"feature_schema_version": str(FEATURE_SCHEMA_VERSION), "action_layout": ACTION_LAYOUT}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = AgentNet(ALGOS["eat"]).eval()
    path = tmp_path_factory.mktemp("onnx") / "policy.onnx"
    export_onnx(net, sample_states("edge-hetero", ((5, 3),), 1, seed=9)[0], path, METADATA)
    return net, path


def test_torch_and_onnx_runtime_agree_on_1000_states(exported):
    net, path = exported
    states = sample_states("edge-hetero", SIZES, 334, seed=1)[:1000]
    worst, disagree = max_abs_diff(net, OnnxPolicy(path), states)
    assert worst < 1e-4
    assert disagree == 0


@pytest.mark.parametrize("variant", ["first-architecture", "dsac", "sac", "pool-counts", "count-flags", "task-ranks"])
def test_every_network_variant_exports_to_a_graph_that_computes_what_was_trained(variant, tmp_path):
    """The exported graph folds weights and drops padding (rl/inference.py); these variants take its
    other branches: a second per-action layer and a 16-wide 6-step chain (the NetConfig defaults of
    the first shipped policy), no attention, no chain, and a context that reads the token counts
    (which must stay dynamic: the check runs at other sizes than the export's), also as flags, and
    task tokens that read their ranks in the queue planner's orders (compared across the queue)."""
    from dataclasses import replace

    from aigc_policy.rl.networks import NetConfig

    torch.manual_seed(1)
    configs = {
        "first-architecture": NetConfig(),
        "pool-counts": replace(ALGOS["eat"], pool_counts=True),
        "count-flags": replace(ALGOS["eat"], pool_counts=True, count_flags=True),
        "task-ranks": replace(ALGOS["eat"], pool_counts=True, task_ranks=True),
    }
    net = AgentNet(configs.get(variant) or ALGOS[variant]).eval()
    path = tmp_path / "policy.onnx"
    export_onnx(net, sample_states("edge-hetero", ((5, 3),), 1, seed=9)[0], path, METADATA)
    worst, disagree = max_abs_diff(net, OnnxPolicy(path), sample_states("eat-reference", SIZES, 40, seed=3))
    assert worst < 1e-4
    assert disagree == 0


def test_the_exported_graph_has_no_per_token_shape_arithmetic(exported):
    """A padded, batched graph spends a Shape/Gather/Concat chain on every reshape; the exported
    one reshapes with constants, so its node count stays small (the first export had 326)."""
    import onnx

    _, path = exported
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("Shape") <= 1, ops.count("Shape")  # the queue length, for the final reordering
    assert len(ops) < 250, len(ops)


def test_file_refuses_another_schema(exported, tmp_path):
    net, _ = exported
    path = tmp_path / "old.onnx"
    export_onnx(net, sample_states("edge-hetero", ((3, 2),), 1, seed=2)[0], path,
                {**METADATA, "feature_schema_version": "0"})
    with pytest.raises(PolicyFileError, match="feature schema"):
        OnnxPolicy(path)


def test_shipped_policy_loads_with_metadata_and_schedules_an_episode():
    path = default_policy_path()
    assert path.is_file() and path.stat().st_size <= 5_000_000
    policy = policies.make("eat")
    assert isinstance(policy, OnnxPolicy) and policy.path == path
    for key in ("feature_schema_version", "action_layout", "scenario", "training_seed", "git_commit", "algo"):
        assert policy.metadata.get(key), key
    # trained from committed code with the kernels that give the same weights on any CPU (rl/kernels.py)
    assert not policy.metadata["git_commit"].endswith("-dirty")
    assert policy.metadata["cpu_kernels"] == f"aten=AVX2 mkl={PORTABLE['MKL_CBWR']}"
    sim = Simulator(load_scenario("edge-hetero"))
    sim.reset(3)
    while not sim.done:
        sim.step(policy.decide(sim.snapshot()))
    summary = sim.metrics.summary()
    assert summary["tasks"] > 0 and np.isfinite(summary["mean_response_s"])


def test_shipped_ladts_reference_policy_loads_and_places_like_a_trained_policy():
    """The EAT file for ladts-reference on 8 slots (~4,000 tasks) of the held-out seed 10000: within
    5 % of Opt-TS (uniform random is 2.5x worse). Its 3.3 % lead over Opt-TS builds up with the
    backlog of a full 59-slot episode and is measured by `aigc-edge bench` (docs/ladts.md)."""
    from dataclasses import replace

    from aigc_policy.bench.runner import run_episode
    from aigc_policy.sim.workload import ScenarioWorkload

    path = default_policy_path().with_name("eat-ladts-reference.onnx")
    assert policies.make(f"eat:{path}").metadata["scenario"] == "ladts-reference"
    base = load_scenario("ladts-reference")
    scenario = replace(base, arrivals={**base.arrivals, "slots": 8})
    mean = {name: run_episode(scenario, ScenarioWorkload(scenario), spec, 10_000).summary()["mean_response_s"]
            for name, spec in (("eat", f"eat:{path}"), ("opt-ts", "opt-ts"))}
    assert mean["eat"] < 1.05 * mean["opt-ts"]


def test_eat_without_a_path_takes_the_file_shipped_for_the_scenario():
    default = default_policy_path()
    for name, expected in (("eat-reference", "eat-eat-reference.onnx"), ("ladts-reference", "eat-ladts-reference.onnx"),
                           ("edge-hetero", "eat-edge-hetero.onnx")):
        policy = policies.make("eat", load_scenario(name))
        assert policy.path.name == expected and policy.metadata["scenario"] == name
    assert policies.make("eat").path == default  # no scenario (the operator): the default file
    assert policies.make(f"eat:{default}", load_scenario("eat-reference")).path == default  # a path wins


def held_out_means(scenario, spec: str, seeds: range, *keys: str) -> tuple[float, ...]:
    """Mean of each summary key over one episode per seed (common random numbers across specs)."""
    from aigc_policy.bench.runner import run_episode
    from aigc_policy.sim.workload import ScenarioWorkload

    runs = [run_episode(scenario, ScenarioWorkload(scenario), spec, seed).summary() for seed in seeds]
    return tuple(float(np.mean([r[key] for r in runs])) for key in keys)


def test_shipped_eat_reference_policy_cuts_eat_greedys_response_at_the_top_rate():
    """Held-out episodes (seeds neither training nor the bench uses) at 0.11 tasks/s: the EAT file
    trained on eat-reference (behaviour cloning + DAgger of the rollout planner) against the fixed
    greedy. Measured over these 6 episodes: 50.9 s vs 85.7 s (0.59x), at higher quality; the
    default file (trained on edge-hetero and eat-reference) scores 52.5 s (0.61x) and the planner
    the eat-reference file imitates 50.7 s."""
    scenario = load_scenario("eat-reference", rate=0.11)

    def means(spec: str) -> tuple[float, float]:
        return held_out_means(scenario, spec, range(20_000, 20_006), "mean_response_s", "mean_quality")

    (eat, eat_quality), (greedy, greedy_quality) = means("eat"), means("eat-greedy")
    assert eat < 0.7 * greedy and eat_quality >= greedy_quality
    default, default_quality = means(f"eat:{default_policy_path()}")
    assert default < 0.75 * greedy and default_quality >= greedy_quality


def test_shipped_default_policy_matches_opt_ts_at_high_load_on_edge_hetero():
    """12 held-out episodes at 4 tasks/s: the default file (the operator's) against opt-ts, its
    teacher there (measured: 11.07 s / 90.9 % SLO vs 11.08 s / 90.7 %; eft 13.60 s / 84.1 %)."""
    scenario = load_scenario("edge-hetero", rate=4.0)

    def means(spec: str) -> tuple[float, float]:
        return held_out_means(scenario, spec, range(30_000, 30_012), "mean_response_s", "slo_attainment")

    (eat, eat_slo), (opt_ts, opt_ts_slo), (eft, _) = means(f"eat:{default_policy_path()}"), means("opt-ts"), means("eft")
    assert eat <= 1.02 * opt_ts and eat_slo >= opt_ts_slo - 0.01
    assert eat < 0.9 * eft


def test_shipped_edge_hetero_policy_beats_the_best_heuristic_at_high_load():
    """The same 12 held-out episodes: the edge-hetero file (a student of the queue planner at 2-4
    tasks/s whose context counts tokens and whose task tokens read their rank in the planner's
    orders) against opt-ts, the best heuristic at 4 tasks/s, held to the issue's targets (>= 10 %
    lower response, >= 5 SLO points). Measured: 9.56 s / 97.6 % SLO vs 11.08 s / 90.8 % (-13.7 %,
    +6.9 points)."""
    scenario = load_scenario("edge-hetero", rate=4.0)

    def means(spec: str) -> tuple[float, float, float]:
        return held_out_means(scenario, spec, range(30_000, 30_012), "mean_response_s", "slo_attainment", "mean_quality")

    (eat, eat_slo, eat_quality), (opt_ts, opt_ts_slo, opt_ts_quality) = means("eat"), means("opt-ts")
    assert eat < 0.9 * opt_ts
    assert eat_slo >= opt_ts_slo + 0.05 and eat_quality >= opt_ts_quality


def test_shipped_edge_hetero_policy_beats_the_best_heuristic_at_the_default_rate():
    """12 held-out episodes at edge-hetero's own 1 task/s, where eft (spt and warm-first choose as
    it does) is the best heuristic. The file learnt there from the rollout planner, which loads
    sd-turbo once onto a fast GPU instead of running every preview on a Jetson. Measured: 1.62 s /
    99.9 % SLO vs eft 1.68 s / 100 % (-3.5 %); the previous file, taught by eft there, 1.73 s."""
    scenario = load_scenario("edge-hetero", rate=1.0)

    def means(spec: str) -> tuple[float, float, float]:
        return held_out_means(scenario, spec, range(30_000, 30_012), "mean_response_s", "slo_attainment", "mean_quality")

    (eat, eat_slo, eat_quality), (eft, eft_slo, eft_quality) = means("eat"), means("eft")
    assert eat < 0.98 * eft
    assert eat_slo >= eft_slo - 0.01 and eat_quality >= eft_quality - 1e-9  # equal up to summation order


def test_a_corrupt_shipped_file_fails_at_reset_so_bench_and_operator_refuse_it_up_front(tmp_path, monkeypatch, capsys):
    import aigc_policy.onnx_policy as onnx_policy
    from aigc_operator.policy_loader import load_policies
    from aigc_policy.cli import main

    (tmp_path / "eat-default.onnx").write_bytes(b"not onnx")
    monkeypatch.setattr(onnx_policy, "default_policy_path", lambda name=onnx_policy.DEFAULT_ARTIFACT: tmp_path / name)
    policy = policies.make("eat")  # opened lazily, so a scenario bound next costs one load
    with pytest.raises(PolicyFileError, match="not a loadable ONNX policy"):
        policy.reset(0)
    loaded = load_policies("eat", "eft")
    assert loaded.primary is None and "not a loadable ONNX policy" in loaded.error
    assert main(["bench", "--policies", "eat", "--episodes", "1", "--out", str(tmp_path / "b")]) == 2
    assert "not a loadable ONNX policy" in capsys.readouterr().err


def test_eat_path_spec_loads_another_file(exported):
    _, path = exported
    assert policies.make(f"eat:{path}").path == path


@pytest.mark.parametrize("content", [None, b"not an onnx file"])
def test_bench_with_a_missing_or_corrupt_policy_file_is_a_one_line_error(tmp_path, capsys, content):
    from aigc_policy.cli import main

    path = tmp_path / "policy.onnx"
    if content is not None:
        path.write_bytes(content)
    assert main(["bench", "--policies", f"eat:{path}", "--episodes", "1", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aigc-edge bench: error:") and str(path) in err and "\n" not in err
    with pytest.raises(PolicyFileError):
        OnnxPolicy(path)


def test_policy_latency_prints_end_to_end_and_per_stage_percentiles(capsys):
    import json

    from aigc_policy.cli import main

    assert main(["policy-latency", "--nodes", "3", "--queue", "4", "--decisions", "1000", "--new-tasks", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["decisions"] == 1000 and report["new_tasks"] == 2 and report["policy"].endswith("eat-default.onnx")
    assert report["providers"] == ["CPUExecutionProvider"]
    assert report["retains_freed_memory"] is True  # glibc here, as in the operator image (aigc_policy.allocator)
    for stage in ("", "encode_", "onnx_", "decode_"):
        assert 0 < report[f"{stage}p50_ms"] <= report[f"{stage}p99_ms"], stage
    stage_p50 = sum(report[f"{s}_p50_ms"] for s in ("encode", "onnx", "decode"))
    assert 0.5 * stage_p50 <= report["p50_ms"] <= 2 * stage_p50  # the total is the sum of the stages


@pytest.mark.parametrize("args, message", [
    (["--new-tasks", "5"], "--new-tasks must be in 1..--queue"),
    (["--nodes", "65"], "--nodes must be in 2..64"),
    (["--decisions", "10"], "at least 1000"),
])
def test_policy_latency_refuses_bad_arguments_in_one_line(args, message, capsys):
    from aigc_policy.cli import main

    assert main(["policy-latency", "--queue", "4", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_policy_latency_times_no_inference_when_nothing_can_be_decided():
    from dataclasses import replace

    from aigc_policy.latency import _timed_decision
    from aigc_policy.synthetic import random_snapshot

    sc = load_scenario("edge-hetero")
    snap = random_snapshot(np.random.default_rng(0), sc.perf, 3, 4, sc.gang_sizes)
    stuck = replace(snap, nodes=[replace(n, up=False) for n in snap.nodes], has_future_events=False)
    policy = OnnxPolicy()
    assert policy.decide(stuck) is None
    encode_s, onnx_s, decode_s = _timed_decision(policy, stuck)
    assert encode_s > 0 and onnx_s == 0.0 and decode_s == 0.0
    assert _timed_decision(policy, snap)[1] > 0  # a decidable state does run the graph
