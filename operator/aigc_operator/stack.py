"""Start and stop the operator and workers as ordinary processes against a LocalCluster.

Shared by the demo, the e2e reliability lane and the bench scripts: each process runs
`aigc-edge operator` / `aigc-edge worker run` with its own service-account kubeconfig (so RBAC is
exercised as in a cluster), logs to `state/logs/<name>.log`, and lives in its own session so that
a SIGKILL reaches exactly it and its children. Only the standard library (+ devcluster) is used.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc_operator.devcluster import LocalCluster, repo_root

NAMESPACE = "aigc-system"
OPERATOR_SA = "aigc-operator"
WORKER_SA = "aigc-worker"
MANIFESTS = ("namespace.yaml", "crds/aigctasks.yaml", "rbac-operator.yaml", "rbac-worker.yaml")
CLI = (sys.executable, "-m", "aigc_policy.cli")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """One started process; `argv` and `env` are kept so it can be started again after a kill."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    ports: dict[str, int] = field(default_factory=dict)

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts + 1} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process group and, for SIGKILL, reap it."""
        if self.popen is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        if sig == signal.SIGKILL:
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        self.kill(signal.SIGTERM)
        assert self.popen is not None
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)

    def restart(self) -> Proc:
        self.kill()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class WorkerOptions:
    simulate: str | None = "edge-hetero"  # scenario whose service times a simulate worker sleeps
    time_scale: float = 0.05
    heartbeat_s: float = 2.0
    catalog: Path | None = None
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperatorOptions:
    policy: str = "eat"
    perf_profile: str = "edge-hetero"
    catalog: Path | None = None
    prometheus: bool = True
    heartbeat_ttl_s: float = 10.0
    claim_timeout_s: float = 30.0
    max_attempts: int = 3
    metrics_poll_s: float = 2.0
    metrics_ttl_s: float = 30.0
    extra: tuple[str, ...] = ()


class Stack:
    """The operator and one worker per fake node, started from `state/`."""

    def __init__(self, cluster: LocalCluster, state: Path, task_namespace: str | None = None) -> None:
        self.cluster = cluster
        self.state = Path(state)
        self.task_namespace = task_namespace
        self.operator: Proc | None = None
        self.workers: dict[str, Proc] = {}

    # ------------------------------------------------------------------ setup

    def install(self) -> None:
        """Namespace, CRD and RBAC from manifests/ (idempotent, server-side apply)."""
        folder = repo_root() / "manifests"
        for name in MANIFESTS:
            self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(folder / name))
        self.cluster.kubectl(
            "wait", "--for=condition=Established", "crd/aigctasks.aigc.edge.io", "--timeout=60s"
        )

    def _kubeconfig(self, serviceaccount: str) -> Path:
        return self.cluster.kubeconfig_for(NAMESPACE, serviceaccount)

    def _env(self, serviceaccount: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ, KUBECONFIG=str(self._kubeconfig(serviceaccount)), PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    # ------------------------------------------------------------------ operator

    def operator_proc(self, options: OperatorOptions, launcher: Sequence[str] = CLI) -> Proc:
        metrics_port, liveness_port = free_port(), free_port()
        argv = [
            *launcher, "operator",
            "--namespace", NAMESPACE,
            "--policy", options.policy,
            "--perf-profile", options.perf_profile,
            "--metrics-port", str(metrics_port),
            "--liveness", f"http://127.0.0.1:{liveness_port}/healthz",
            "--heartbeat-ttl", str(options.heartbeat_ttl_s),
            "--claim-timeout", str(options.claim_timeout_s),
            "--max-attempts", str(options.max_attempts),
            "--metrics-poll", str(options.metrics_poll_s),
            "--metrics-ttl", str(options.metrics_ttl_s),
            "--log-format", "plain",
            "--verbosity", "normal",
        ]  # fmt: skip
        if options.catalog is not None:
            argv += ["--catalog", str(options.catalog)]
        if options.prometheus:
            argv += ["--prometheus-url", self.cluster.info.prometheus_url]
        if self.task_namespace:
            argv += ["--watch-namespaces", self.task_namespace]
        argv += list(options.extra)
        proc = Proc("operator", argv, self._env(OPERATOR_SA), self.state / "logs" / "operator.log")
        proc.ports = {"metrics": metrics_port, "liveness": liveness_port}
        return proc

    def start_operator(self, options: OperatorOptions | None = None, launcher: Sequence[str] = CLI) -> Proc:
        self.operator = self.operator_proc(options or OperatorOptions(), launcher).start()
        self.cluster.add_scrape_target("aigc-operator", f"127.0.0.1:{self.operator.ports['metrics']}")
        return self.operator

    def operator_health(self, timeout: float = 3.0) -> dict[str, Any] | None:
        """The scheduler part of the operator's /healthz (None while it does not answer)."""
        if self.operator is None:
            return None
        url = f"http://127.0.0.1:{self.operator.ports['liveness']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.load(resp)["scheduler"]
        except (OSError, KeyError, ValueError):
            return None

    def operator_metrics(self, timeout: float = 3.0) -> str:
        """The operator's own /metrics text ('' while it is down)."""
        if self.operator is None:
            return ""
        url = f"http://127.0.0.1:{self.operator.ports['metrics']}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    # ------------------------------------------------------------------ workers

    def node_classes(self) -> dict[str, str]:
        out = self.cluster.kubectl(
            "get", "nodes", "-l", "aigc.edge.io/gpu-node=true",
            "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.aigc\\.edge\\.io/gpu-class}{\"\\n\"}{end}",
        ).stdout  # fmt: skip
        return dict(line.split("=", 1) for line in out.split() if "=" in line)

    def worker_proc(
        self,
        node: str,
        gpu_class: str,
        options: WorkerOptions,
        launcher: Sequence[str] = CLI,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        metrics_port = free_port()
        argv = [
            *launcher, "worker", "run",
            "--node", node,
            "--holder", f"worker-{node}",
            "--lease-namespace", NAMESPACE,
            "--results-dir", str(self.state / "results"),
            "--metrics-port", str(metrics_port),
            "--advertise-host", "127.0.0.1",
            "--heartbeat", str(options.heartbeat_s),
        ]  # fmt: skip
        if self.task_namespace:
            argv += ["--namespace", self.task_namespace]
        if options.simulate:
            argv += ["--simulate", options.simulate, "--gpu-class", gpu_class]
            argv += ["--time-scale", str(options.time_scale)]
        if options.catalog is not None:
            argv += ["--catalog", str(options.catalog)]
        argv += list(options.extra)
        log_path = self.state / "logs" / f"worker-{node}.log"
        proc = Proc(f"worker-{node}", argv, self._env(WORKER_SA, env), log_path)
        proc.ports = {"metrics": metrics_port}
        return proc

    def start_workers(
        self,
        options: WorkerOptions | None = None,
        nodes: Sequence[str] | None = None,
        launcher: Sequence[str] = CLI,
        env: Mapping[str, str] | None = None,
    ) -> dict[str, Proc]:
        classes = self.node_classes()
        for node in nodes or sorted(classes):
            proc = self.worker_proc(node, classes[node], options or WorkerOptions(), launcher, env).start()
            self.workers[node] = proc
            self.cluster.add_scrape_target(
                "aigc-worker", f"127.0.0.1:{proc.ports['metrics']}", {"node": node}
            )
        return self.workers

    # ------------------------------------------------------------------ teardown

    def processes(self) -> list[Proc]:
        return [p for p in [self.operator, *self.workers.values()] if p is not None]

    def stop(self) -> None:
        procs = self.processes()
        for proc in procs:
            if proc.alive():
                proc.kill(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            assert proc.popen is not None
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill(signal.SIGKILL)
        for proc in procs:
            if "metrics" in proc.ports:
                job = "aigc-operator" if proc is self.operator else "aigc-worker"
                with suppress(Exception):
                    self.cluster.remove_scrape_target(job, f"127.0.0.1:{proc.ports['metrics']}")
        self.operator = None
        self.workers = {}
