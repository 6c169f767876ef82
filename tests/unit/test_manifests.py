"""Static checks of manifests/: one CRD source, least-privilege RBAC, safe Deployment/DaemonSet."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aigc_api.catalog import load_catalog
from aigc_api.spec import parse_task_spec
from aigc_policy.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("copy", ["manifests/crds/aigctasks.yaml", "charts/aigc-edge-scheduler/crds/aigctasks.yaml"])
def test_crd_has_one_source(copy: str) -> None:
    source = REPO / "operator" / "aigc_api" / "crds" / "aigctasks.yaml"
    assert (REPO / copy).read_bytes() == source.read_bytes(), (
        f"{copy} must be a copy of operator/aigc_api/crds/aigctasks.yaml: run `make manifests`"
    )


@pytest.mark.parametrize("name", ["rbac-operator.yaml", "rbac-worker.yaml"])
def test_rbac_is_least_privilege(name: str) -> None:
    for doc in docs(MANIFESTS / name):
        for rule in doc.get("rules", ()):
            assert (
                "*" not in rule["verbs"]
                and "*" not in rule["resources"]
                and "*" not in rule.get("apiGroups", [])
            )
            assert "secrets" not in rule["resources"]
            if "aigctasks" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}  # spec is the user's
            if "leases" in rule["resources"]:
                assert doc["kind"] == "Role"  # namespaced only


def test_operator_deployment_is_single_and_hardened() -> None:
    (deploy,) = docs(MANIFESTS / "operator-deployment.yaml")
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_worker_daemonset_targets_gpu_nodes() -> None:
    (ds,) = docs(MANIFESTS / "worker-daemonset.yaml")
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"aigc.edge.io/gpu-node": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_examples_parse_and_use_catalog_models() -> None:
    catalog = load_catalog(MANIFESTS / "model-catalog.yaml")
    perf = load_scenario(str(MANIFESTS / "perf-profile.yaml")).perf
    examples = sorted((MANIFESTS / "examples").glob("*.yaml"))
    assert len(examples) >= 3
    for path in examples:
        (body,) = docs(path)
        body["metadata"]["namespace"] = "default"
        assert parse_task_spec(body).model in catalog
    assert set(perf.models) <= set(catalog.names)
    for path in (MANIFESTS / "examples" / "invalid").glob("*.yaml"):
        assert path.read_text().startswith("# expect: "), path
