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
