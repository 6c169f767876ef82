"""`aigc-edge operator` configuration: flags, env vars, validation, and docs/operator.md in sync."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from aigc_operator import settings as settings_mod
from aigc_policy.cli import UsageError

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> settings_mod.OperatorSettings:
    parser = argparse.ArgumentParser()
    settings_mod.add_arguments(parser)
    return settings_mod.from_args(parser.parse_args(list(argv)))


def test_defaults_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse() == settings_mod.OperatorSettings(pod=None)
    monkeypatch.setenv("AIGC_POLICY", "eft")
    monkeypatch.setenv("AIGC_REQUIRE_WORKER", "false")
    monkeypatch.setenv("AIGC_WATCH_NAMESPACES", "a, b")
    settings = parse("--max-attempts=5")
    assert (
        settings.policy == "eft" and not settings.require_worker and settings.watch_namespaces == ("a", "b")
    )
    assert settings.max_attempts == 5


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-attempts=0"],
        ["--gpu-node-label=nokey"],
        ["--log-format=xml"],
        ["--tick=0"],
        ["--normal-events-per-s=-1"],
        ["--normal-events-per-s=nan"],
    ],
)
def test_bad_configuration_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(*argv)


def test_every_flag_is_documented() -> None:
    parser = argparse.ArgumentParser()
    settings_mod.add_arguments(parser)
    flags = {
        opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }
    documented = set(re.findall(r"`(--[a-z-]+)`", (REPO / "docs" / "operator.md").read_text()))
    assert flags <= documented, f"undocumented: {sorted(flags - documented)}"


@pytest.fixture
def outside_a_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No service account and a KUBECONFIG that points nowhere; returns a file that is not YAML."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("models:\n  - {name: a, source: [\n")
    return broken


def test_operator_without_a_kubernetes_api_is_a_one_line_error(outside_a_cluster, capsys) -> None:
    from aigc_policy.cli import main

    assert main(["operator", "--perf-profile", "edge-hetero"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aigc-edge operator: error: no Kubernetes API to talk to: not in a cluster")
    assert err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--catalog", "--perf-profile"])
def test_operator_names_the_file_and_line_of_broken_yaml(outside_a_cluster, capsys, flag) -> None:
    from aigc_policy.cli import main

    extra = [] if flag == "--perf-profile" else ["--perf-profile", "edge-hetero"]
    assert main(["operator", *extra, flag, str(outside_a_cluster)]) == 2
    err = capsys.readouterr().err
    assert f"{flag}: {outside_a_cluster}: invalid YAML at line 3, column 1: " in err and err.count("\n") == 1


def test_demo_refuses_a_bad_policy_or_an_empty_stop_dir_before_starting_anything(tmp_path, capsys) -> None:
    from aigc_policy.cli import main

    assert main(["demo", "--policy", "eatt", "--dir", str(tmp_path / "state")]) == 2
    assert "--policy eatt: unknown policy 'eatt'" in capsys.readouterr().err
    assert main(["demo", "--policy", f"eat:{tmp_path / 'none.onnx'}"]) == 2
    assert f"no policy file at {tmp_path / 'none.onnx'}" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
    assert main(["demo", "--stop", str(tmp_path / "kept")]) == 2
    assert "no demo kept there" in capsys.readouterr().err
    assert not (tmp_path / "kept").exists()  # it used to create DIR/cluster and report success
