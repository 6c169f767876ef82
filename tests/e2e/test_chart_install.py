"""The Helm chart on the real local control plane: install, RBAC matrix, worker admission policy,
CRD upgrade by server-side apply, uninstall.

There is no kube-scheduler and kwok runs no containers: the DaemonSet controller
(kube-controller-manager) creates one worker Pod per GPU node with a node affinity, the test binds
each Pod to that node as the scheduler would, and kwok marks it Running. Tokens bound to those Pods
carry the node name the ValidatingAdmissionPolicy checks.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aigc_api import status as st
from aigc_api.clock import utcnow
from aigc_operator.devcluster import LocalCluster
from operator_harness import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "aigc-edge-scheduler"
CRD_FILE = CHART / "crds" / "aigctasks.yaml"
CRD = "aigctasks.aigc.edge.io"
RELEASE, NS, TASK_NS = "e2e", "e2e-chart", "e2e-chart-tasks"
OPERATOR, WORKER = f"{RELEASE}-operator", f"{RELEASE}-worker"
CPU_NODE = "cpu-0"  # a kwok node without the GPU label: no worker may land there
ALL = "*"  # can-i across all namespaces


def _json(cluster: LocalCluster, *args: str, kubeconfig: Path | None = None) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json", kubeconfig=kubeconfig).stdout)


def _helm(cluster: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    info = cluster.info
    return subprocess.run(
        [str(info.helm), *args], env=info.environ(), capture_output=True, text=True, check=check, timeout=120
    )


def _apply(cluster: LocalCluster, doc: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))


@dataclass
class Release:
    cluster: LocalCluster
    gpu_nodes: list[str]
    worker_pods: dict[str, str]  # node -> worker Pod bound to it


def _bind_worker_pods(cluster: LocalCluster, gpu_nodes: list[str]) -> dict[str, str]:
    selector = f"app.kubernetes.io/name=aigc-worker,app.kubernetes.io/instance={RELEASE}"

    def created() -> list[dict[str, Any]]:
        pods = _json(cluster, "-n", NS, "get", "pods", "-l", selector)["items"]
        return pods if len(pods) >= len(gpu_nodes) else []

    pods: dict[str, str] = {}
    for pod in wait_for(created, 60, "the DaemonSet controller to create the worker Pods"):
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        (node,) = terms["nodeSelectorTerms"][0]["matchFields"][0]["values"]
        name = pod["metadata"]["name"]
        pods[node] = name
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"name": node},
        }
        cluster.kubectl(
            "create",
            "--raw",
            f"/api/v1/namespaces/{NS}/pods/{name}/binding",
            "-f",
            "-",
            input=json.dumps(binding),
        )
    return pods


@pytest.fixture(scope="module")
def release(local_cluster_handle: LocalCluster) -> Iterator[Release]:
    cluster = local_cluster_handle
    gpu_nodes = [f"edge-{i}" for i in range(cluster.info.nodes)]
    namespace = yaml.safe_load((REPO / "manifests" / "namespace.yaml").read_text())  # its Pod Security labels
    namespace["metadata"]["name"] = NS
    _apply(cluster, namespace)
    _apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TASK_NS}})
    _apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": CPU_NODE, "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}},
        },
    )
    try:
        _helm(cluster, "install", RELEASE, str(CHART), "--namespace", NS)
        yield Release(cluster, gpu_nodes, _bind_worker_pods(cluster, gpu_nodes))
    finally:
        _helm(cluster, "uninstall", RELEASE, "--namespace", NS, check=False)
        cluster.kubectl("delete", "node", CPU_NODE, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "namespace", NS, TASK_NS, "--wait=false", "--ignore-not-found", check=False)


CHART_OBJECTS = [
    ("deployment", OPERATOR, NS),
    ("daemonset", WORKER, NS),
    ("serviceaccount", OPERATOR, NS),
    ("serviceaccount", WORKER, NS),
    ("clusterrole", f"{OPERATOR}-tasks", None),
    ("clusterrole", f"{OPERATOR}-nodes", None),
    ("clusterrole", f"{WORKER}-tasks", None),
    ("clusterrolebinding", f"{OPERATOR}-tasks", None),
    ("clusterrolebinding", f"{OPERATOR}-nodes", None),
    ("clusterrolebinding", f"{WORKER}-tasks", None),
    ("role", f"{OPERATOR}-leases", NS),
    ("role", f"{WORKER}-leases", NS),
    ("rolebinding", f"{OPERATOR}-leases", NS),
    ("rolebinding", f"{WORKER}-leases", NS),
    ("configmap", f"{RELEASE}-model-catalog", NS),
    ("configmap", f"{RELEASE}-perf-profile", NS),
    ("service", f"{OPERATOR}-metrics", NS),
    ("validatingadmissionpolicy", f"{WORKER}-task-status", None),
    ("validatingadmissionpolicy", f"{WORKER}-lease", None),
    ("validatingadmissionpolicybinding", f"{WORKER}-task-status", None),
    ("validatingadmissionpolicybinding", f"{WORKER}-lease", None),
]


def _exists(cluster: LocalCluster, kind: str, name: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else []
    return cluster.kubectl(*scope, "get", kind, name, check=False).returncode == 0


def test_install_creates_the_objects(release: Release) -> None:
    cluster = release.cluster
    missing = [(k, n) for k, n, ns in CHART_OBJECTS if not _exists(cluster, k, n, ns)]
    assert not missing
    crd = _json(cluster, "get", "crd", CRD)
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])

    deploy = _json(cluster, "-n", NS, "get", "deployment", OPERATOR)
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    selector = f"app.kubernetes.io/name=aigc-operator,app.kubernetes.io/instance={RELEASE}"
    pods = wait_for(
        lambda: _json(cluster, "-n", NS, "get", "pods", "-l", selector)["items"], 30, "the operator Pod"
    )
    assert len(pods) == 1

    # CEL is type-checked against the CRD schema: no warnings means every field path exists.
    for name in (f"{WORKER}-task-status", f"{WORKER}-lease"):
        vap = wait_for(
            lambda n=name: (v := _json(cluster, "get", "validatingadmissionpolicy", n)).get("status") and v,
            30,
            f"type checking of {name}",
        )
        assert not vap["status"].get("typeChecking", {}).get("expressionWarnings"), vap["status"]


def test_worker_pods_land_on_gpu_nodes_only(release: Release) -> None:
    cluster = release.cluster
    assert sorted(release.worker_pods) == release.gpu_nodes  # and so not on CPU_NODE

    def ready() -> dict[str, Any] | None:
        status = _json(cluster, "-n", NS, "get", "daemonset", WORKER)["status"]
        return status if status.get("numberReady") == len(release.gpu_nodes) else None

    status = wait_for(ready, 60, "every worker Pod Running on its kwok node")
    assert status["desiredNumberScheduled"] == len(release.gpu_nodes)
    for node, pod in release.worker_pods.items():
        assert _json(cluster, "-n", NS, "get", "pod", pod)["spec"]["nodeName"] == node


# (service account, verb, resource[/subresource], namespace (ALL: every namespace; None: cluster), allowed)
RBAC_MATRIX = [
    (OPERATOR, "watch", "aigctasks", ALL, True),
    (OPERATOR, "get", "aigctasks", TASK_NS, True),
    (OPERATOR, "patch", "aigctasks/status", TASK_NS, True),
    (OPERATOR, "patch", "aigctasks", TASK_NS, False),
    (OPERATOR, "delete", "aigctasks", TASK_NS, False),
    (OPERATOR, "list", "nodes", None, True),
    (OPERATOR, "patch", "nodes", None, False),
    (OPERATOR, "create", "events", TASK_NS, True),
    (OPERATOR, "list", "leases", NS, True),
    (OPERATOR, "create", "leases", NS, False),
    (OPERATOR, "create", "pods", NS, False),
    (OPERATOR, "get", "secrets", NS, False),
    (OPERATOR, "list", "secrets", ALL, False),
    (OPERATOR, "update", "customresourcedefinitions", None, False),
    (OPERATOR, "*", "aigctasks", TASK_NS, False),
    (OPERATOR, "*", "*", ALL, False),
    (WORKER, "watch", "aigctasks", ALL, True),
    (WORKER, "patch", "aigctasks/status", TASK_NS, True),
    (WORKER, "update", "aigctasks", TASK_NS, False),
    (WORKER, "create", "aigctasks", TASK_NS, False),
    (WORKER, "create", "leases", NS, True),
    (WORKER, "patch", "leases", NS, True),
    (WORKER, "delete", "leases", NS, False),
    (WORKER, "create", "leases", "default", False),
    (WORKER, "list", "nodes", None, False),
    (WORKER, "patch", "nodes", None, False),
    (WORKER, "create", "events", TASK_NS, False),
    (WORKER, "get", "configmaps", NS, False),
    (WORKER, "get", "secrets", NS, False),
    (WORKER, "*", "aigctasks", TASK_NS, False),
    (WORKER, "*", "*", ALL, False),
]


def test_rbac_matrix(release: Release) -> None:
    wrong = []
    for account, verb, resource, namespace, allowed in RBAC_MATRIX:
        name, _, sub = resource.partition("/")
        args = ["auth", "can-i", verb, name, f"--as=system:serviceaccount:{NS}:{account}"]
        args += [f"--subresource={sub}"] if sub else []
        args += ["--all-namespaces"] if namespace == ALL else ["-n", namespace] if namespace else []
        answer = release.cluster.kubectl(*args, check=False).stdout.strip()
        if answer != ("yes" if allowed else "no"):
            wrong.append(f"{account} {verb} {resource} in {namespace}: {answer}")
    assert not wrong, "\n".join(wrong)


def _token_kubeconfig(cluster: LocalCluster, path: Path, *token_args: str) -> Path:
    token = cluster.kubectl("-n", NS, "create", "token", *token_args, "--duration=10m").stdout.strip()
    config = yaml.safe_load(cluster.info.kubeconfig.read_text())
    config["users"] = [{"name": "token", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "token"
    path.write_text(yaml.safe_dump(config))
    return path


def _placed_task(cluster: LocalCluster, name: str, nodes: list[str], claims: list[st.Claim] = ()) -> None:
    doc = {
        "apiVersion": "aigc.edge.io/v1alpha1",
        "kind": "AIGCTask",
        "metadata": {"name": name, "namespace": TASK_NS},
        "spec": {"model": "sd-turbo", "prompt": "a lighthouse", "steps": 2},
    }
    _apply(cluster, doc)
    now = utcnow()
    placement = st.PlacementRecord(1, tuple(nodes), 2, "eft", "e2e", now, 0)
    status = {
        "phase": st.SCHEDULED,
        "attempts": 1,
        "placement": placement.to_status(),
        "claims": [c.to_status() for c in claims],
    }
    cluster.kubectl(
        "-n", TASK_NS, "patch", "aigctask", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_admission_policy_confines_worker_to_its_node(release: Release, tmp_path: Path) -> None:
    cluster = release.cluster
    pod0 = release.worker_pods["edge-0"]
    bound = _token_kubeconfig(
        cluster, tmp_path / "w0", WORKER, "--bound-object-kind=Pod", f"--bound-object-name={pod0}"
    )
    who = _json(cluster, "auth", "whoami", kubeconfig=bound)["status"]["userInfo"]
    assert who["extra"]["authentication.kubernetes.io/node-name"] == ["edge-0"]
    unbound = _token_kubeconfig(cluster, tmp_path / "w", WORKER)
    operator = _token_kubeconfig(cluster, tmp_path / "op", OPERATOR)

    other = st.Claim(1, 1, "edge-1", release.worker_pods["edge-1"], utcnow())
    _placed_task(cluster, "solo-0", ["edge-0"])
    _placed_task(cluster, "solo-1", ["edge-1"])
    _placed_task(cluster, "gang-01", ["edge-0", "edge-1"], [other])

    def body(task: str) -> dict[str, Any]:
        return _json(cluster, "-n", TASK_NS, "get", "aigctask", task)

    now = utcnow()
    result = st.TaskResult("file:///results/solo-0.png", "0" * 64, 1024)
    placement_change = {"status": {"placement": {"steps": 50}}}
    on_other_node = "worker on node edge-0 may only update the status of AIGCTasks placed on that node"
    own_claims = "worker on node edge-0 may only add, renew or release its own claims"
    # (what, kubeconfig, task, patch builder (body -> merge patch dict or JSON Patch list), refusal or None)
    steps: list[tuple[str, Path, str, Callable[[dict], Any], str | None]] = [
        ("claim rank 0 here", bound, "solo-0", lambda b: st.claim_patch(b, attempt=1, rank=0, holder=pod0, now=now), None),
        ("heartbeat it", bound, "solo-0", lambda b: st.heartbeat_patch(b, attempt=1, rank=0, holder=pod0, now=now), None),
        ("report Running", bound, "solo-0", lambda b: st.started_patch(b, attempt=1, now=now), None),
        ("report Succeeded", bound, "solo-0", lambda b: st.succeeded_patch(b, attempt=1, result=result, now=now), None),
        ("claim a task on edge-1", bound, "solo-1", lambda b: st.claim_patch(b, attempt=1, rank=0, holder=pod0, now=now), on_other_node),
        ("move a placement", bound, "gang-01", lambda b: placement_change, "may not change status.placement"),
        ("fail the task", bound, "gang-01", lambda b: {"status": {"phase": st.FAILED}}, "may only set status.phase to Running or Succeeded"),
        ("drop edge-1's claim", bound, "gang-01", lambda b: {"status": {"claims": []}}, own_claims),
        ("claim rank 0 of the gang", bound, "gang-01", lambda b: st.claim_patch(b, attempt=1, rank=0, holder=pod0, now=now), None),
        ("fail the attempt", bound, "gang-01", lambda b: st.attempt_failed_patch(b, attempt=1, reason=st.WORKER_ERROR, message="x", now=now), None),
        ("release rank 0", bound, "gang-01", lambda b: st.release_patch(b, attempt=1, rank=0, holder=pod0), None),
        ("claim without a node-bound token", unbound, "solo-1", lambda b: {"status": {"phase": st.RUNNING}}, "not bound to a Pod on a node"),
        ("operator moves a placement", operator, "solo-1", lambda b: placement_change, None),
    ]  # fmt: skip
    wrong = []
    for what, kubeconfig, task, build, refusal in steps:
        patch = build(body(task))
        kind = "json" if isinstance(patch, list) else "merge"
        done = cluster.kubectl(
            "-n", TASK_NS, "patch", "aigctask", task, "--subresource=status", f"--type={kind}",
            "-p", json.dumps(patch), kubeconfig=kubeconfig, check=False,
        )  # fmt: skip
        if refusal is None and done.returncode != 0:
            wrong.append(f"{what}: refused: {done.stderr.strip()}")
        elif refusal is not None and (done.returncode == 0 or refusal not in done.stderr):
            wrong.append(f"{what}: expected refusal {refusal!r}, got: {done.stderr.strip() or 'allowed'}")
    assert not wrong, "\n".join(wrong)
    assert body("solo-0")["status"]["phase"] == st.SUCCEEDED
    assert body("solo-1")["status"]["placement"]["steps"] == 50
    assert body("gang-01")["status"]["claims"] == [other.to_status()]

    for lease_node, refusal in (("edge-0", None), ("edge-1", "may only write the Lease aigc-worker-edge-0")):
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": f"aigc-worker-{lease_node}"},
        }
        done = cluster.kubectl(
            "-n", NS, "create", "-f", "-", input=json.dumps(lease), kubeconfig=bound, check=False
        )
        assert (done.returncode == 0) if refusal is None else (refusal in done.stderr), done.stderr


def test_crd_upgrade_by_server_side_apply(release: Release, tmp_path: Path) -> None:
    """The documented upgrade: kubectl apply --server-side --force-conflicts -f crds/ (docs/crds.md)."""
    cluster = release.cluster
    upgraded = tmp_path / "aigctasks.yaml"
    doc = yaml.safe_load(CRD_FILE.read_text())
    doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] += " (upgraded)"
    upgraded.write_text(yaml.safe_dump(doc))
    try:
        refused = cluster.kubectl("apply", "--server-side", "-f", str(upgraded), check=False)
        if refused.returncode != 0:  # the first apply after helm's create conflicts with its field manager
            assert "conflict" in refused.stderr, refused.stderr
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(upgraded))
        schema = _json(cluster, "get", "crd", CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert schema["description"].endswith("(upgraded)")
    finally:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))


def test_uninstall_removes_objects_and_keeps_crd(release: Release) -> None:
    cluster = release.cluster
    _helm(cluster, "uninstall", RELEASE, "--namespace", NS, "--wait")
    left = [(k, n) for k, n, ns in CHART_OBJECTS if _exists(cluster, k, n, ns)]
    assert not left
    assert _exists(cluster, "crd", CRD, None)
    assert _exists(cluster, "aigctask", "solo-0", TASK_NS)  # user data survives
