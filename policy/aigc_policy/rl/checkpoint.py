"""Training checkpoints (`last.pt`, `best.pt`): written by `aigc-edge train`, read by `--resume`
and `aigc-edge export`.

A checkpoint is a dict of tensors and plain values, read with torch's weights-only unpickler, so a
file from elsewhere cannot run code on load. Anything unusable (unreadable, not ours, another
feature schema, a network this version cannot build) is a CheckpointError naming the file.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from aigc_policy.errors import UsageError
from aigc_policy.features import FEATURE_SCHEMA_VERSION
from aigc_policy.rl.networks import AgentNet, NetConfig
from aigc_policy.rl.sac_discrete import SacLearner

KEYS = ("net", "learner", "meta", "progress")
META_KEYS = ("algo", "scenario", "seed", "net", "feature_schema_version")


class CheckpointError(UsageError):
    """A checkpoint file that cannot be used; the message names the file and the reason."""


def save(path: Path, net: AgentNet, learner: SacLearner, meta: dict, progress: dict) -> None:
    """Write atomically: a run killed mid-save keeps its previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save({"net": net.state_dict(), "learner": learner.state_dict(), "meta": meta, "progress": progress}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[AgentNet, dict]:
    """(network with the checkpoint's weights, the checkpoint dict)."""
    ckpt = _read(path)
    meta = ckpt["meta"]
    schema = meta["feature_schema_version"]
    if schema != FEATURE_SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: trained on feature schema {schema}, this version encodes schema "
            f"{FEATURE_SCHEMA_VERSION}; retrain it with this version"
        )
    try:
        net = AgentNet(NetConfig(**meta["net"]))
        net.load_state_dict(ckpt["net"])
    except (KeyError, TypeError, RuntimeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: its network does not fit this version's ({reason})") from None
    return net, ckpt


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint written by `aigc-edge train` ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or not set(KEYS) <= ckpt.keys():
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a checkpoint written by `aigc-edge train` (expected {list(KEYS)}, found {found})")
    meta = ckpt["meta"]
    missing = [key for key in META_KEYS if key not in meta] if isinstance(meta, dict) else list(META_KEYS)
    if missing:
        raise CheckpointError(f"{path}: its meta lacks {missing}")
    return ckpt
