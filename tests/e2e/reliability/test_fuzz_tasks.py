"""Bad input: >= 1,000 generated AIGCTask documents (wrong types, huge/empty prompts, unicode,
out-of-range sizes/steps, unknown models, missing/extra fields) sent to the real API server.

Each is checked with a server-side dry-run create (strict field validation, as kubectl does):
rejected with a message naming the field, or accepted. A sample of the accepted ones is then
created with the operator and simulate workers running: each ends Succeeded, or Failed with a
reason (unknown models fast), or waits with an explicit Scheduled=False reason; the operator
never crashes or stalls. Sizes: AIGC_REL_FUZZ_EXAMPLES (1000), AIGC_REL_FUZZ_CREATE (60).
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aigc_api import GROUP, PLURAL, VERSION
from aigc_api import status as st
from aigc_api.clock import parse_time
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import OperatorOptions, WorkerOptions
from harness import condition, custom_api, int_env, report, scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

pytestmark = pytest.mark.e2e

EXAMPLES = int_env("AIGC_REL_FUZZ_EXAMPLES", 1000)
CREATE = int_env("AIGC_REL_FUZZ_CREATE", 60)
NAMESPACE = "rel-fuzz"
CATALOG_MODELS = ("sd-turbo", "sd15", "sdxl")
FIELD = re.compile(r"\bspec\b|\bmetadata\b|unknown field")
MISSING = object()

ANY_JSON = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats(allow_nan=False) | hs.text(max_size=8),
    lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


def maybe(valid: hs.SearchStrategy[Any], invalid: hs.SearchStrategy[Any]) -> hs.SearchStrategy[Any]:
    """Mostly valid values so that the accepted sample is interesting, sometimes anything."""
    return hs.one_of(valid, valid, valid, invalid, hs.just(MISSING), ANY_JSON)


PROMPT = maybe(
    hs.text(min_size=1, max_size=80),
    hs.sampled_from(["", "x" * 2001, "\u202e\u0000 zalgo ẑ̵̢͉a̴̞l̷g̸o 🦊" * 3, "ok" * 1000]),
)
MODEL = maybe(
    hs.sampled_from(CATALOG_MODELS),
    hs.sampled_from(["no-such-model", "SDXL", "-bad", "a" * 64, "ünï", "", "sd turbo", "sd15."])
    | hs.from_regex(r"\A[a-z0-9][-a-z0-9]{0,20}[a-z0-9]\Z"),
)
SIZE = maybe(hs.sampled_from([512, 768, 1024]), hs.integers(-10, 5000) | hs.sampled_from(["512", 512.5, 640]))
STEP = hs.integers(-5, 200) | hs.sampled_from([1, 4, 20, 30, "20", 2.5])
GUIDANCE = maybe(
    hs.sampled_from([7, "7.5", 0, "30.000"]), hs.sampled_from([31, -1, "7.5555", "abc", 7.5, "30.1"])
)
SEED = maybe(hs.integers(0, 2**32 - 1), hs.integers(-(2**70), 2**70))
GANGS = maybe(
    hs.lists(hs.sampled_from([1, 2, 4]), min_size=1, max_size=3, unique=True),
    hs.lists(hs.integers(-1, 9), max_size=6),
)
QOS = maybe(
    hs.fixed_dictionaries(
        {},
        optional={
            "deadlineSeconds": hs.integers(1, 86400),
            "minQualityMilli": hs.integers(0, 1000),
            "priority": hs.integers(-1000, 1000),
        },
    ),
    hs.dictionaries(hs.sampled_from(["deadlineSeconds", "minQualityMilli", "priority", "bogus"]), ANY_JSON),
)
EXTRA = hs.dictionaries(hs.sampled_from(["colour", "Steps", "gpu", "x-extra"]), ANY_JSON, max_size=2)


@hs.composite
def task_specs(draw: hs.DrawFn) -> Any:
    if draw(hs.integers(0, 40)) == 0:
        return draw(ANY_JSON)  # spec is not even an object
    spec: dict[str, Any] = {}
    for key, strategy in (
        ("model", MODEL),
        ("prompt", PROMPT),
        ("negativePrompt", PROMPT),
        ("width", SIZE),
        ("height", SIZE),
        ("guidance", GUIDANCE),
        ("seed", SEED),
        ("gangSizes", GANGS),
        ("qos", QOS),
    ):
        value = draw(strategy)
        if value is not MISSING and not (
            key in ("negativePrompt", "guidance", "gangSizes", "seed") and draw(hs.booleans())
        ):
            spec[key] = value
    shape = draw(hs.sampled_from(["steps", "range", "range", "both", "none"]))
    if shape in ("steps", "both"):
        spec["steps"] = draw(hs.sampled_from([1, 2, 4]) | STEP)
    if shape in ("range", "both"):
        low = draw(hs.sampled_from([1, 10, 20]) | STEP)
        spec["minSteps"], spec["maxSteps"] = low, draw(hs.sampled_from([4, 30, 50]) | STEP)
    spec.update(draw(EXTRA) if draw(hs.integers(0, 4)) == 0 else {})
    return spec


def _doc(name: str, spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AIGCTask"}
    doc["metadata"] = {"name": name, "namespace": NAMESPACE}
    if spec is not MISSING:
        doc["spec"] = spec
    return doc


def _catalog(path: Path) -> Path:
    entries = [
        {"name": m, "source": f"file:///nonexistent/{m}", "pipeline": m, "vramGb": 4} for m in CATALOG_MODELS
    ]
    path.write_text(yaml.safe_dump({"models": entries}))
    return path


def test_fuzz_tasks(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    rel_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    api = custom_api(rel_cluster.info.kubeconfig)
    accepted: list[dict[str, Any]] = []
    rejected: list[str] = []
    unnamed: list[tuple[Any, str]] = []
    counter = iter(range(10**9))

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(task_specs())
    def submit(spec: Any) -> None:
        doc = _doc(f"fuzz-{next(counter):05d}", spec)
        try:
            api.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, doc, dry_run="All", field_validation="Strict"
            )
        except Exception as exc:
            status = getattr(exc, "status", None)
            body = str(getattr(exc, "body", exc))
            assert status in (400, 422), (status, body, spec)
            rejected.append(body)
            if not FIELD.search(body):
                unnamed.append((spec, body[:300]))
            return
        accepted.append(doc)

    t0 = time.monotonic()
    submit()
    dry_run_s = time.monotonic() - t0
    submitted = len(accepted) + len(rejected)

    rng = random.Random(8)
    unknown = [d for d in accepted if d["spec"].get("model") not in CATALOG_MODELS]
    sample = rng.sample(unknown, min(len(unknown), CREATE // 4))
    known = [d for d in accepted if d not in sample]
    sample += rng.sample(known, min(len(known), CREATE - len(sample)))

    operator = OperatorOptions(policy="eat-greedy", catalog=_catalog(tmp_path / "catalog.yaml"))
    with scenario(rel_cluster, tmp_path, NAMESPACE, operator, WorkerOptions(time_scale=0.02)) as sc:
        names = sc.tasks.create(sample)

        def settled(bodies: list[dict[str, Any]]) -> bool:
            return all(
                st.is_terminal(b) or condition(b, "Scheduled").get("status") == "False" for b in bodies
            )

        deadline = time.monotonic() + 180
        bodies: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            bodies = {b["metadata"]["name"]: b for b in sc.tasks.list() if b["metadata"]["name"] in names}
            if len(bodies) == len(names) and settled(list(bodies.values())):
                break
            time.sleep(1)
        operator_proc = sc.stack.operator
        assert operator_proc is not None

        outcomes: dict[str, int] = {}
        unknown_fail_s: list[float] = []
        bad: list[tuple[str, dict[str, Any]]] = []
        for name, body in bodies.items():
            phase = st.phase_of(body)
            failure = st.status_of(body).get("failure") or {}
            waiting = condition(body, "Scheduled")
            if phase == st.FAILED:
                key = f"Failed/{failure.get('reason')}"
                if not failure.get("reason"):
                    bad.append((name, st.status_of(body)))
            elif phase == st.SUCCEEDED:
                key = "Succeeded"
            elif waiting.get("status") == "False" and waiting.get("reason"):
                key = f"Waiting/{waiting['reason']}"
            else:
                key = f"Stuck/{phase}"
                bad.append((name, st.status_of(body)))
            outcomes[key] = outcomes.get(key, 0) + 1
            if body["spec"].get("model") not in CATALOG_MODELS:
                created = parse_time(body["metadata"]["creationTimestamp"])
                finished = parse_time((st.status_of(body).get("timings") or {}).get("finishedTime"))
                if failure.get("reason") == st.UNKNOWN_MODEL and created and finished:
                    unknown_fail_s.append((finished - created).total_seconds())
                else:
                    bad.append((name, st.status_of(body)))
        figures = {
            "documents": submitted,
            "rejected": len(rejected),
            "rejected_without_field_name": len(unnamed),
            "accepted": len(accepted),
            "created": len(names),
            "outcomes": outcomes,
            "unknown_models_created": len(unknown_fail_s),
            "unknown_model_fail_max_s": round(max(unknown_fail_s, default=0.0), 2),
            "operator_restarts": operator_proc.starts - 1,
            "operator_alive": operator_proc.alive(),
            "dry_run_s": round(dry_run_s, 1),
        }
        report("fuzz-tasks", figures)
        assert submitted >= EXAMPLES, figures
        assert not unnamed, unnamed[:5]
        assert operator_proc.alive() and operator_proc.starts == 1, operator_proc.log_tail()
        assert not bad, bad[:5]
        assert len(bodies) == len(names)
        assert max(unknown_fail_s, default=0.0) < 15, figures
