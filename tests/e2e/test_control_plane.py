"""The local control plane itself: apiserver, fake GPU nodes, kwok pods, Prometheus, RBAC, helm."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aigc_operator.devcluster import ClusterInfo, LocalCluster, read_versions

pytestmark = pytest.mark.e2e

GPU_CLASS_CYCLE = ["a100", "l4", "jetson-orin", "jetson-orin"]


def _wait(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _kubectl_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def _prom_query(info: ClusterInfo, query: str) -> list[dict[str, Any]]:
    url = f"{info.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_apiserver_answers(local_cluster: ClusterInfo, local_cluster_handle: LocalCluster) -> None:
    # TLS: the serving cert is signed by the cluster CA for 127.0.0.1; anonymous may read /livez.
    ca = local_cluster.dir / "pki" / "ca.crt"
    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"{local_cluster.apiserver_url}/livez", context=ctx, timeout=5) as resp:
        assert resp.status == 200
        assert resp.read().strip() == b"ok"

    version = json.loads(local_cluster_handle.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == read_versions()["KUBERNETES_VERSION"]
    assert local_cluster_handle.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    # ValidatingAdmissionPolicy is served (GA since 1.30)
    resources = local_cluster_handle.kubectl(
        "api-resources", "--api-group=admissionregistration.k8s.io"
    ).stdout
    assert "validatingadmissionpolicies" in resources


def test_gpu_nodes_ready(local_cluster: ClusterInfo, local_cluster_handle: LocalCluster) -> None:
    nodes = _kubectl_json(local_cluster_handle, "get", "nodes", "-l", "aigc.edge.io/gpu-node=true")["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert sorted(by_name) == sorted(f"edge-{i}" for i in range(local_cluster.nodes))
    for i in range(local_cluster.nodes):
        node = by_name[f"edge-{i}"]
        labels = node["metadata"]["labels"]
        assert labels["aigc.edge.io/gpu-class"] == GPU_CLASS_CYCLE[i % 4]
        assert labels["aigc.edge.io/gpu-node"] == "true"
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["status"]["conditions"]
        for key in ("capacity", "allocatable"):
            assert node["status"][key]["nvidia.com/gpu"] == "1"
            assert "cpu" in node["status"][key] and "memory" in node["status"][key]
    # and what a person would see
    table = local_cluster_handle.kubectl("get", "nodes", "-L", "aigc.edge.io/gpu-class").stdout
    assert table.count(" Ready ") == local_cluster.nodes, table


def test_pod_bound_to_fake_node_runs(local_cluster_handle: LocalCluster) -> None:
    ns = "e2e-kwok"
    local_cluster_handle.kubectl("create", "namespace", ns)
    # the service-account controller (kube-controller-manager) creates the default SA
    _wait(
        lambda: local_cluster_handle.kubectl("-n", ns, "get", "sa", "default", check=False).returncode == 0,
        60,
        "default service account",
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {
            "nodeName": "edge-1",
            "containers": [
                {
                    "name": "main",
                    "image": "registry.invalid/never-pulled:0",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }
    local_cluster_handle.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def running() -> dict[str, Any] | None:
        p = _kubectl_json(local_cluster_handle, "-n", ns, "get", "pod", "probe")
        return p if p["status"].get("phase") == "Running" else None

    p = _wait(running, 60, "pod probe Running on edge-1")
    assert p["spec"]["nodeName"] == "edge-1"
    assert p["status"].get("podIP")
    assert all(cs["ready"] for cs in p["status"]["containerStatuses"])
    local_cluster_handle.kubectl("-n", ns, "delete", "pod", "probe", "--wait=true", "--timeout=60s")


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = b'# TYPE aigc_e2e_probe gauge\naigc_e2e_probe{source="test"} 42\n'
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_prometheus_scrapes_runtime_target(
    local_cluster: ClusterInfo, local_cluster_handle: LocalCluster, metrics_server: str
) -> None:
    with urllib.request.urlopen(f"{local_cluster.prometheus_url}/-/ready", timeout=5) as resp:
        assert resp.status == 200

    job = "e2e-probe"
    path = local_cluster_handle.add_scrape_target(job, metrics_server, {"node": "edge-0"})
    try:
        assert path.parent == local_cluster.targets_dir
        result = _wait(
            lambda: [r for r in _prom_query(local_cluster, f'up{{job="{job}"}}') if r["value"][1] == "1"],
            45,
            f"up{{job={job}}} == 1",
        )
        assert result[0]["metric"]["instance"] == metrics_server
        assert result[0]["metric"]["node"] == "edge-0"
        sample = _wait(
            lambda: _prom_query(local_cluster, f'aigc_e2e_probe{{job="{job}"}}'), 30, "probe sample"
        )
        assert sample[0]["value"][1] == "42"
    finally:
        local_cluster_handle.remove_scrape_target(job)


def test_rbac_enforced_for_service_account(local_cluster_handle: LocalCluster, tmp_path: Any) -> None:
    ns = "e2e-rbac"
    local_cluster_handle.kubectl("create", "namespace", ns)
    local_cluster_handle.kubectl("-n", ns, "create", "serviceaccount", "nobody")
    kubeconfig = local_cluster_handle.kubeconfig_for(ns, "nobody", out=tmp_path / "nobody.kubeconfig")

    # authenticated (whoami works) but not authorized to list pods
    who = local_cluster_handle.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:nobody"
    denied = local_cluster_handle.kubectl("-n", ns, "get", "pods", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr, denied.stderr
    assert f"system:serviceaccount:{ns}:nobody" in denied.stderr

    # positive control: a Role + RoleBinding grants exactly that
    local_cluster_handle.kubectl("-n", ns, "create", "role", "pod-reader", "--verb=list", "--resource=pods")
    local_cluster_handle.kubectl(
        "-n",
        ns,
        "create",
        "rolebinding",
        "nobody-reads",
        "--role=pod-reader",
        f"--serviceaccount={ns}:nobody",
    )
    _wait(
        lambda: (
            local_cluster_handle.kubectl(
                "-n", ns, "get", "pods", kubeconfig=kubeconfig, check=False
            ).returncode
            == 0
        ),
        20,
        "RBAC grant to take effect",
    )
    still_denied = local_cluster_handle.kubectl("get", "nodes", kubeconfig=kubeconfig, check=False)
    assert still_denied.returncode != 0 and "Forbidden" in still_denied.stderr


def test_helm_talks_to_cluster(local_cluster: ClusterInfo) -> None:
    version = subprocess.run(
        [str(local_cluster.helm), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith(read_versions()["HELM_VERSION"]), version
    listed = subprocess.run(
        [str(local_cluster.helm), "list", "--all-namespaces", "-o", "json"],
        env=local_cluster.environ(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(listed.stdout) == []
