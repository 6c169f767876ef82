"""A short training run (BC warm start + a few SAC updates) beats uniform random placement."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aigc_policy.cli import main  # noqa: E402
from aigc_policy.features import EncodedState  # noqa: E402
from aigc_policy.rl.checkpoint import load_checkpoint  # noqa: E402
from aigc_policy.rl.kernels import PORTABLE  # noqa: E402
from aigc_policy.rl.train import evaluate, git_commit, greedy_actor  # noqa: E402
from aigc_policy.scenario import load_scenario  # noqa: E402
from aigc_policy.sim import Simulator  # noqa: E402


def uniform_random(seed: int):
    rng = np.random.default_rng(seed)

    def act(snap, state: EncodedState):
        action = int(rng.choice(np.flatnonzero(state.action_mask)))
        return action, 0

    return act


def test_short_run_improves_over_uniform_random(tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--algo", "eat", "--scenario", "edge-hetero", "--rates", "2", "--out", str(out),
                 "--budget", "30", "--demo-episodes", "3", "--bc-updates", "150", "--eval-every", "30",
                 "--eval-episodes", "1", "--batch", "32"])
    assert code == 0
    assert (out / "last.pt").is_file() and (out / "train.csv").is_file() and (out / "eval.csv").is_file()
    net, _ = load_checkpoint(out / "best.pt")
    sims = [Simulator(load_scenario("edge-hetero", rate=2.0))]
    trained = evaluate(greedy_actor(net), sims, 2)
    random = evaluate(uniform_random(0), sims, 2)
    assert trained["score"] > random["score"] + 10
    assert trained["mean_response_s"] < random["mean_response_s"]


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--algo", "sac", "--scenario", "eat-reference", "--out", str(out), "--demo-episodes", "2",
            "--bc-updates", "5", "--eval-every", "5", "--eval-episodes", "1", "--batch", "16"]
    assert main([*args, "--budget", "10", "--pool-counts", "--count-flags", "--task-ranks"]) == 0
    _, first = load_checkpoint(out / "last.pt")
    assert main([*args, "--budget", "20", "--resume"]) == 0  # without the flag: the checkpoint's net goes on
    _, second = load_checkpoint(out / "last.pt")  # loads only if its config matches its weights
    assert all(second["meta"]["net"][flag] for flag in ("pool_counts", "count_flags", "task_ranks"))
    assert second["progress"]["updates"] >= 20 > first["progress"]["updates"]
    assert second["progress"]["warm_started"]


def test_bad_budget_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--budget", "soon"]) == 2
    assert "--budget" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rates", "0.05,soon"], "--rates must be a number or a comma-separated list of numbers, got '0.05,soon'"),
        (["--rates", "0"], "--rates values must be positive numbers, got '0'"),
        (["--mix", "eat-reference:0.1,x"], "the rates of --mix eat-reference must be a number or a comma-separated"),
    ],
)
def test_bad_rates_are_a_usage_error_naming_the_option(tmp_path, capsys, extra, message):
    assert main(["train", "--scenario", "eat-reference", "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_count_flags_without_pool_counts_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--count-flags"]) == 2
    assert "--count-flags extends --pool-counts" in capsys.readouterr().err


class RateRecordingTeacher:
    """eat-greedy that records the arrival rate of every scenario it is bound to."""

    name = "rate-recording"
    bound_rates: list[float] = []

    def __init__(self) -> None:
        from aigc_policy.baselines.eat_greedy import EatGreedy

        self.inner = EatGreedy()

    def use_scenario(self, scenario) -> None:
        self.bound_rates.append(scenario.arrivals["rate"])

    def reset(self, seed: int) -> None:
        self.inner.reset(seed)

    def decide(self, snap):
        return self.inner.decide(snap)


def test_dagger_rounds_run_and_the_teacher_plans_for_each_episodes_rate(tmp_path, capsys, monkeypatch):
    from aigc_policy import policies

    monkeypatch.setitem(policies._registered, RateRecordingTeacher.name, RateRecordingTeacher)
    RateRecordingTeacher.bound_rates = []
    out = tmp_path / "run"
    assert main(["train", "--algo", "eat", "--scenario", "eat-reference", "--rates", "0.03,0.11", "--out", str(out),
                 "--teacher", RateRecordingTeacher.name, "--demo-episodes", "2", "--bc-updates", "5",
                 "--dagger-rounds", "1", "--dagger-episodes", "2", "--dagger-updates", "5", "--budget", "0",
                 "--eval-episodes", "1", "--batch", "16"]) == 0
    assert "after dagger round 1" in capsys.readouterr().out
    assert len((out / "eval.csv").read_text().splitlines()) == 1 + 2  # header, after BC, after the round
    # demos and DAgger episodes (alternating rates): never one rate for all. A single candidate is
    # not scored, so the teacher choice binds no rate.
    assert RateRecordingTeacher.bound_rates == [0.03, 0.11, 0.03, 0.11]


class ExpertAtOneRate:
    """eat-greedy at the rate it knows, a uniformly random placement at any other."""

    name, good_rate = "", 0.0

    def __init__(self) -> None:
        from aigc_policy.baselines.eat_greedy import EatGreedy
        from aigc_policy.baselines.simple import RandomScheduler

        self.expert, self.novice, self.active = EatGreedy(), RandomScheduler(), None

    def use_scenario(self, scenario) -> None:
        self.active = self.expert if scenario.arrivals["rate"] == self.good_rate else self.novice

    def reset(self, seed: int) -> None:
        self.expert.reset(seed)
        self.novice.reset(seed)

    def decide(self, snap):
        return self.active.decide(snap)


class ExpertAtLowRate(ExpertAtOneRate):
    name, good_rate = "low-rate-expert", 0.03


class ExpertAtHighRate(ExpertAtOneRate):
    name, good_rate = "high-rate-expert", 0.11


def test_the_teacher_is_the_best_candidate_at_each_training_rate(tmp_path, capsys, monkeypatch):
    from aigc_policy import policies

    for teacher in (ExpertAtLowRate, ExpertAtHighRate):
        monkeypatch.setitem(policies._registered, teacher.name, teacher)
    assert main(["train", "--algo", "eat", "--scenario", "eat-reference", "--rates", "0.03,0.11", "--out",
                 str(tmp_path / "run"), "--teacher", "high-rate-expert,low-rate-expert", "--demo-episodes", "2",
                 "--bc-updates", "5", "--budget", "0", "--eval-episodes", "1", "--batch", "16"]) == 0
    demos = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("demos"))
    assert "low-rate-expert (rate 0.03), high-rate-expert (rate 0.11)" in demos


def test_dagger_keeps_the_teachers_choice_and_plays_the_students():
    from aigc_policy.rl.train import dagger_actor

    labels: dict[int, tuple[int, int]] = {}
    state = object()
    act = dagger_actor(lambda snap, s: (3, 0), lambda snap, s: (5, 2), labels)
    assert act(None, state) == (3, 0) and labels == {id(state): (5, 2)}


def test_teacher_at_pins_one_rates_teacher_over_the_scored_choice(tmp_path, capsys, monkeypatch):
    from aigc_policy import policies

    for teacher in (ExpertAtLowRate, ExpertAtHighRate):
        monkeypatch.setitem(policies._registered, teacher.name, teacher)
    assert main(["train", "--algo", "eat", "--scenario", "eat-reference", "--rates", "0.03,0.11", "--out",
                 str(tmp_path / "run"), "--teacher", "high-rate-expert,low-rate-expert",
                 "--teacher-at", "0.03=high-rate-expert", "--demo-episodes", "2", "--bc-updates", "5",
                 "--budget", "0", "--eval-episodes", "1", "--batch", "16"]) == 0
    out = capsys.readouterr().out
    demos = next(line for line in out.splitlines() if line.startswith("demos"))
    assert "(every rate)" in demos and demos.split(" episodes of ")[1].startswith("high-rate-expert")
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("teacher candidate")] == [
        "teacher candidate high-rate-expert", "teacher candidate low-rate-expert"  # scored at 0.11 only
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("0.5=eft", "0.5 is not a training rate (0.03, 0.11)"),
        ("fast=eft", "expected RATE=NAME"),
        ("0.03=", "expected RATE=NAME"),
        ("0.03=no-such-policy", "unknown policy 'no-such-policy'"),
    ],
)
def test_bad_teacher_at_is_a_usage_error(tmp_path, capsys, entry, message):
    args = ["train", "--scenario", "eat-reference", "--rates", "0.03,0.11", "--out", str(tmp_path), "--teacher-at", entry]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_demo_episodes_zero_with_a_teacher_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--demo-episodes", "0"]) == 2
    assert "--demo-episodes must be at least 1" in capsys.readouterr().err


def _trained_weights(out, *flags: str, **env: str) -> dict:
    """best.pt weights of a tiny run of `aigc-edge train` in a fresh process (the kernel pin must
    come before torch's first kernel, which in this test process has long run)."""
    command = [sys.executable, "-m", "aigc_policy.cli", "train", "--algo", "eat", "--scenario", "edge-hetero",
               "--rates", "2", "--teacher", "opt-ts", "--demo-episodes", "2", "--bc-updates", "60",
               "--budget", "0", "--eval-episodes", "1", "--out", str(out), *flags]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(out / "best.pt", weights_only=True)["net"]


def _largest_difference(a: dict, b: dict) -> float:
    return max(float((a[name] - b[name]).abs().max()) for name in a)


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"), reason="needs an AVX2 CPU")
def test_training_gives_the_same_weights_whatever_kernels_the_cpu_would_pick(tmp_path):
    """Another CPU type is stood in for by ATEN_CPU_CAPABILITY=default, torch's kernels for a CPU
    without AVX2. MKL's per-vendor code cannot be switched on one machine: that half rests on
    MKL's documented MKL_CBWR=COMPATIBLE guarantee (aigc_policy.rl.kernels)."""
    other_cpu = {"ATEN_CPU_CAPABILITY": "default"}
    here = _trained_weights(tmp_path / "here")
    there = _trained_weights(tmp_path / "there", **other_cpu)
    assert _largest_difference(here, there) == 0.0
    native_here = _trained_weights(tmp_path / "native-here", "--native-kernels")
    native_there = _trained_weights(tmp_path / "native-there", "--native-kernels", **other_cpu)
    assert _largest_difference(native_here, native_there) > 0.0  # the stand-in does change the sums
    config = json.loads((tmp_path / "here" / "config.json").read_text())
    assert config["cpu_kernels"] == f"aten=AVX2 mkl={PORTABLE['MKL_CBWR']}"


def test_git_commit_marks_a_checkout_with_modified_tracked_files(tmp_path, monkeypatch):
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "tracked.py").write_text("a = 1\n")
    git("init", "-q")
    git("add", "tracked.py")
    git("commit", "-qm", "first")
    monkeypatch.chdir(tmp_path)
    clean = git_commit()
    (tmp_path / "runs").mkdir()  # untracked output, as training writes
    assert git_commit() == clean and len(clean) >= 7
    (tmp_path / "tracked.py").write_text("a = 2\n")
    assert git_commit() == f"{clean}-dirty"
