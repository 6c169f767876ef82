"""Numeric flags of every `aigc-edge` command are refused at parse time, in one line naming the flag."""

import argparse

import pytest
from aigc_policy.arguments import non_negative_int, positive_float, positive_int
from aigc_policy.cli import main


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (positive_int, {"1": 1, "64": 64}, ["0", "-3", "2.5", "two", ""]),
        (non_negative_int, {"0": 0, "7": 7}, ["-1", "1e3", "x"]),
        (positive_float, {"0.5": 0.5, "3": 3.0, "1e-3": 1e-3}, ["0", "-1", "nan", "inf", "soon"]),
    ],
)
def test_value_types_accept_and_refuse(parse, good, bad) -> None:
    assert {text: parse(text) for text in good} == good
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
            parse(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "x", "--threads", "0"],
        ["train", "--out", "x", "--seed", "-1"],
        ["train", "--out", "x", "--batch", "0"],
        ["train", "--algo", "ladts", "--out", "x", "--episodes", "0"],
        ["policy-latency", "--threads", "0"],
        ["bench", "--seed", "soon"],
        ["bench", "--episodes", "0"],
        ["worker", "run", "--heartbeat", "0"],
        ["worker", "profile", "--catalog", "c", "--out", "o", "--steps", "0"],
        ["demo", "--timeout", "-5"],
    ],
)
def test_bad_numbers_stop_the_command_before_it_starts(argv, capsys) -> None:
    flag, value = argv[-2], argv[-1]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {flag}: must be " in err and err.endswith(f"got '{value}'")


@pytest.mark.parametrize("sizes", ["512", "64xa", "60x64", "", "0x0"])
def test_worker_profile_refuses_sizes_the_scenario_format_cannot_hold(sizes, capsys) -> None:
    argv = ["worker", "profile", "--catalog", "not-read.yaml", "--out", "o.yaml", "--sizes", sizes]
    assert main(argv) == 2
    assert f"--sizes must be WxH items, each side a positive multiple of 8, got {sizes!r}" in capsys.readouterr().err
