"""`aigc-edge export` end to end from a real (tiny) training checkpoint, and the checkpoints it
and `train --resume` must refuse in one line (rl/checkpoint.py)."""

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aigc_policy.actions import action_count  # noqa: E402
from aigc_policy.cli import main  # noqa: E402
from aigc_policy.features import FEATURE_SCHEMA_VERSION  # noqa: E402
from aigc_policy.onnx_policy import OnnxPolicy  # noqa: E402
from aigc_policy.scenario import load_scenario  # noqa: E402
from aigc_policy.synthetic import random_snapshot  # noqa: E402

TRAIN = ["train", "--algo", "eat", "--scenario", "edge-hetero", "--rates", "2", "--seed", "7", "--demo-episodes", "1",
         "--bc-updates", "5", "--eval-every", "5", "--eval-episodes", "1", "--batch", "16"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main([*TRAIN, "--out", str(out), "--budget", "10"]) == 0
    return out


def test_export_writes_a_policy_that_loads_decides_and_carries_the_training_metadata(run_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "policy.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    policy = OnnxPolicy(out)
    meta = policy.session.get_modelmeta().custom_metadata_map
    assert (meta["scenario"], meta["training_seed"]) == ("edge-hetero", "7")
    assert meta["feature_schema_version"] == str(FEATURE_SCHEMA_VERSION)
    sc = load_scenario("edge-hetero")
    snap = random_snapshot(np.random.default_rng(3), sc.perf, 6, 5, sc.gang_sizes)
    state = policy.encoder.encode(snap)
    logits, _ = policy.logits(state)
    assert logits.shape == (action_count(5, 6),)
    assert np.isfinite(logits[state.action_mask]).all()


class RunsCodeOnLoad:
    """Unpickling this with a full unpickler would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _broken(kind: str, good: Path, path: Path) -> str:
    """Write a broken checkpoint of `kind` at `path`; the words its error message must contain."""
    if kind == "empty":
        path.write_bytes(b"")
        return "not a checkpoint written by `aigc-edge train` (EOFError)"
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return "not a checkpoint written by `aigc-edge train`"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[:2000])
        return "not a checkpoint written by `aigc-edge train`"
    if kind == "a tensor":
        torch.save(torch.zeros(3), path)
        return "found Tensor"
    if kind == "runs code":
        torch.save({"net": RunsCodeOnLoad(path.with_suffix(".ran"))}, path)
        return "not a checkpoint written by `aigc-edge train` (UnpicklingError)"
    ckpt = torch.load(good, weights_only=True)
    if kind == "other schema":
        ckpt["meta"]["feature_schema_version"] = FEATURE_SCHEMA_VERSION + 1
        expected = f"trained on feature schema {FEATURE_SCHEMA_VERSION + 1}"
    elif kind == "no meta seed":
        del ckpt["meta"]["seed"]
        expected = "its meta lacks ['seed']"
    else:  # other network: weights of a wider net than its config says
        ckpt["meta"]["net"]["width"] *= 2
        expected = "its network does not fit this version's"
    torch.save(ckpt, path)
    return expected


KINDS = ["empty", "random bytes", "truncated", "a tensor", "runs code", "other schema", "no meta seed", "other network"]


@pytest.mark.parametrize("kind", KINDS)
def test_export_refuses_a_broken_checkpoint_in_one_line_and_writes_nothing(run_dir, tmp_path, capsys, kind):
    bad, out = tmp_path / "bad.pt", tmp_path / "policy.onnx"
    expected = _broken(kind, run_dir / "best.pt", bad)
    assert main(["export", "--checkpoint", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aigc-edge export: error: {bad}: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert not bad.with_suffix(".ran").exists()  # weights-only load: the pickle's code never ran


def test_an_export_that_fails_its_parity_check_writes_nothing(run_dir, tmp_path, capsys, monkeypatch):
    import aigc_policy.rl.export as export

    monkeypatch.setattr(export, "max_abs_diff", lambda net, policy, states: (0.5, 3))  # a broken graph's figures
    out = tmp_path / "policy.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--out", str(out)]) == 2
    assert f"export check failed, {out} not written: torch vs ORT 5.00e-01, 3 different actions" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no file, and no staging folder left next to it


def test_export_to_a_folder_is_refused_before_any_work(run_dir, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder" in capsys.readouterr().err


def test_export_without_a_checkpoint_file_names_the_path(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "p.onnx")]) == 2
    assert f"no checkpoint at {tmp_path / 'none.pt'}" in capsys.readouterr().err


def test_resume_from_a_broken_last_checkpoint_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "last.pt").write_bytes(pickle.dumps({"net": 1}))
    assert main([*TRAIN, "--out", str(tmp_path), "--budget", "5", "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'last.pt'}: not a checkpoint written by `aigc-edge train`" in err
