"""Driving the operator on the local control plane (e2e tests, bench/operator_latency.py):
a dcgm-exporter stand-in, simulated worker Leases and the real `aigc-edge operator` process.
Like devcluster.py, a development tool: the operator itself never imports it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from aigc_api.clock import utcnow
from aigc_api.lease import WorkerStatus, to_lease_body

from aigc_operator.devcluster import LocalCluster, repo_root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a scraper that timed out and hung up is not an error here


class DcgmExporter:
    """dcgm-exporter's text format for fake GPUs; `Hostname` on even nodes, `hostname` (master) on odd.

    Samples of the nodes in `stamped` carry explicit timestamps, as a relay or federation serves
    them; `freeze(node)` stops that node's timestamp from advancing. That is how a hung source
    looks to Prometheus while the series stays visible. (Stamping only after the hang would not
    do: Prometheus marks a series stale when its samples start carrying timestamps.)
    """

    def __init__(self, nodes: list[str], stamped: frozenset[str] = frozenset()) -> None:
        self.nodes = nodes
        self.stamped = stamped
        self.frozen_at: dict[str, float] = {}  # node -> wall time its samples stopped at
        self.port = free_port()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                payload = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return None

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def render(self) -> str:
        lines = []
        for metric, value in (
            ("DCGM_FI_DEV_GPU_UTIL", 35),
            ("DCGM_FI_DEV_FB_FREE", 20000),
            ("DCGM_FI_DEV_FB_USED", 4000),
        ):
            lines.append(f"# TYPE {metric} gauge")
            for i, node in enumerate(self.nodes):
                host = "Hostname" if i % 2 == 0 else "hostname"
                labels = f'gpu="0",UUID="GPU-{i:04d}",device="nvidia0",modelName="fake",{host}="{node}"'
                stamp = ""
                if node in self.stamped:
                    stamp = f" {int(self.frozen_at.get(node, time.time()) * 1000)}"
                lines.append(f"{metric}{{{labels}}} {value}{stamp}")
        return "\n".join(lines) + "\n"

    def freeze(self, node: str) -> None:
        if node not in self.stamped:
            raise ValueError(f"{node} is not stamped; only stamped nodes can freeze")
        self.frozen_at[node] = time.time()

    def thaw(self, node: str) -> None:
        self.frozen_at.pop(node, None)

    def close(self) -> None:
        self._server.shutdown()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def publish_worker_leases(
    cluster: LocalCluster, namespace: str, nodes: list[str], busy_s: dict[str, float] | None = None
) -> None:
    """What the SD workers publish, written directly (there are no real workers in this lane)."""
    now = utcnow()
    docs = []
    for node in nodes:
        free_at = now + timedelta(seconds=(busy_s or {}).get(node, 0.0))
        status = WorkerStatus(
            node=node,
            holder=f"fake-worker-{node}",
            address="127.0.0.1:1",
            renew_time=now,
            lease_seconds=3600,
            free_at=free_at,
        )
        docs.append(to_lease_body(status, namespace))
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


class OperatorProcess:
    """`aigc-edge operator` as a subprocess with its own kubeconfig, ports and log file."""

    def __init__(self, kubeconfig: Path, log_path: Path, *args: str) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.args = list(args)
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PYTHONPATH"] = os.pathsep.join(str(repo_root() / p) for p in ("policy", "operator", "sd-worker"))
        command = [
            sys.executable, "-m", "aigc_policy.cli", "operator",
            f"--metrics-port={self.metrics_port}",
            f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
            "--verbosity=normal", "--log-format=plain",
            *self.args,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.health, 60, f"operator health endpoint (log: {self.log_path})")
        return self

    def health(self) -> dict[str, Any] | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=3) as resp:
                return json.load(resp)["scheduler"]
        except (OSError, KeyError, ValueError):
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=3) as resp:
            return resp.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
        for line in self.metrics().splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
