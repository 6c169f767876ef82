"""Run an exported policy with ONNX Runtime: the Scheduler used by bench and by the operator.

numpy + onnxruntime only (no torch). Inputs come from features.Encoder, outputs are decoded by
aigc_policy.actions, and the file's metadata must match this package's feature schema and
action layout, so a policy never silently reads tensors laid out for another version.

Execution providers come from configuration: the `providers` argument, else the environment
variable AIGC_EDGE_ONNX_PROVIDERS (comma-separated, or "auto" for CUDA when onnxruntime offers
it), else CPU. The chain noise is not an input: the exported graph is the deterministic path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

from aigc_policy.actions import ACTION_LAYOUT, WAIT, decode, greedy_action, split_action
from aigc_policy.features import FEATURE_SCHEMA_VERSION, EncodedState, Encoder
from aigc_policy.placement import Placement
from aigc_policy.scenario import Scenario
from aigc_policy.snapshot import ClusterSnapshot

PROVIDERS_ENV = "AIGC_EDGE_ONNX_PROVIDERS"
INPUTS = ("tasks", "nodes", "pairs", "action_mask", "steps_mask")
DEFAULT_ARTIFACT = "eat-default.onnx"


class PolicyFileError(ValueError):
    """An ONNX file that is missing or was built for another schema or action layout."""


def default_policy_path(name: str = DEFAULT_ARTIFACT) -> Path:
    return Path(str(resources.files("aigc_policy") / "artifacts" / name))


def resolve_providers(providers: Sequence[str] | None = None) -> list[str]:
    wanted = list(providers) if providers else [p for p in os.environ.get(PROVIDERS_ENV, "").split(",") if p]
    available = ort.get_available_providers()
    if not wanted:
        return ["CPUExecutionProvider"]
    if wanted == ["auto"]:
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise PolicyFileError(f"ONNX Runtime providers not available here: {', '.join(missing)}")
    return wanted


class OnnxPolicy:
    """Scheduler protocol over an exported policy (actions.greedy_action of the masked logits).

    Without a path it runs the shipped `<name>-default.onnx`, or, once `use_scenario` names a
    scenario with its own shipped file (`<name>-<scenario>.onnx`), that one. A shipped file is
    opened by `reset` (or first use), so binding a scenario right after construction loads one
    file, not two; an explicit path is opened at once, so a bad file fails where it is named.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        providers: Sequence[str] | None = None,
        threads: int = 1,
        name: str = "eat",
    ) -> None:
        self.name = name
        self.explicit = bool(path)
        self.providers = resolve_providers(providers)
        self.threads = threads
        self.encoder = Encoder()
        self.path = Path(path) if path else default_policy_path(f"{name}-default.onnx")
        self._session: ort.InferenceSession | None = None
        self._metadata: dict[str, str] = {}
        if self.explicit or not self.path.is_file():
            self._open()

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            self._open()
        assert self._session is not None
        return self._session

    @property
    def metadata(self) -> dict[str, str]:
        self.session  # noqa: B018 - opens the file on first use
        return self._metadata

    def _open(self) -> None:
        if not self.path.is_file():
            raise PolicyFileError(f"no policy file at {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own classes for a corrupt or non-ONNX file
            raise PolicyFileError(f"{self.path}: not a loadable ONNX policy ({str(exc).splitlines()[0][:200]})") from None
        self._metadata = dict(session.get_modelmeta().custom_metadata_map)
        self._check_metadata()
        self._session = session

    def use_scenario(self, scenario: Scenario) -> None:
        """Without an explicit file, switch to the shipped policy trained on `scenario`, if any."""
        specific = default_policy_path(f"{self.name}-{scenario.name}.onnx")
        if not self.explicit and specific.is_file() and specific != self.path:
            self.path, self._session = specific, None

    def _check_metadata(self) -> None:
        schema = self._metadata.get("feature_schema_version")
        if schema != str(FEATURE_SCHEMA_VERSION):
            raise PolicyFileError(f"{self.path}: feature schema {schema}, this package encodes {FEATURE_SCHEMA_VERSION}")
        layout = self._metadata.get("action_layout")
        if layout != ACTION_LAYOUT:
            raise PolicyFileError(f"{self.path}: action layout {layout!r}, this package decodes {ACTION_LAYOUT!r}")

    def reset(self, seed: int) -> None:
        self.session  # noqa: B018 - a broken shipped file fails here, before the first decision

    def logits(self, state: EncodedState) -> tuple[np.ndarray, np.ndarray]:
        """Masked action logits [A] and steps logits [Q, S] of one state."""
        feeds = {name: getattr(state, name)[None] for name in INPUTS}
        logits, steps = self.session.run(None, feeds)
        return logits[0], steps[0]

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        if not snap.queue:
            return None
        state = self.encoder.encode(snap)
        if not state.action_mask.any():
            return None
        return self.choose(snap, state, *self.logits(state))

    @staticmethod
    def choose(snap: ClusterSnapshot, state: EncodedState, logits: np.ndarray, steps: np.ndarray) -> Placement | None:
        """The greedy placement of a state's logits (None: wait; see actions.greedy_action)."""
        action = greedy_action(logits)
        if action == WAIT:
            return None
        task, _, _ = split_action(action, state.n_nodes)
        return decode(snap, action, int(np.argmax(steps[task])))


def factory(algo: str) -> Callable[..., OnnxPolicy]:
    """Registry factory for `algo[:PATH]`: PATH, or the shipped file (see OnnxPolicy)."""

    def make(path: str = "") -> OnnxPolicy:
        return OnnxPolicy(path or None, name=algo)

    return make


eat = factory("eat")
dsac = factory("dsac")
sac = factory("sac")
