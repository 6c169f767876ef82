"""A real local Kubernetes control plane for tests and the demo (no mocks).

Thin, typed wrapper over the single shell implementation in ``hack/``:

* ``hack/versions.env``          -- the one file pinning component versions,
* ``hack/build-components.sh``   -- builds etcd, kube-apiserver, kube-controller-manager, kubectl,
  kwok and helm from Go modules into ``$AIGC_EDGE_CACHE/bin/<name>-<version>/<name>``,
* ``hack/localcluster.sh``       -- ``up`` / ``down`` / ``status`` / ``kubeconfig-for`` and, for
  fault injection, ``stop-component`` / ``start-component`` / ``restart-component``.

Example::

    with LocalCluster(Path("/tmp/c1"), nodes=4) as info:
        subprocess.run([info.kubectl, "get", "nodes"], env=info.environ(), check=True)
        cluster.add_scrape_target("worker", "127.0.0.1:9400", {"node": "edge-0"})

Only the standard library is imported here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = [
    "COMPONENTS",
    "ClusterError",
    "ClusterInfo",
    "ComponentsBuildError",
    "LocalCluster",
    "build_components",
    "cache_dir",
    "component_bin",
    "hack_dir",
    "missing_components",
    "read_versions",
    "repo_root",
]

#: Components built by ``hack/build-components.sh`` (plus Debian's ``prometheus``).
COMPONENTS: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "kwok",
    "helm",
    "prometheus",
)

_VERSION_KEY = {
    "etcd": "ETCD_VERSION",
    "kube-apiserver": "KUBERNETES_VERSION",
    "kube-controller-manager": "KUBERNETES_VERSION",
    "kubectl": "KUBERNETES_VERSION",
    "kwok": "KWOK_VERSION",
    "helm": "HELM_VERSION",
}

_ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class ClusterError(RuntimeError):
    """A ``hack/localcluster.sh`` command failed; the message carries its output tail."""


class ComponentsBuildError(ClusterError):
    """``hack/build-components.sh`` failed; ``log_path`` holds the full build log."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


# --------------------------------------------------------------------------- locations


def repo_root() -> Path:
    """The checkout holding ``hack/localcluster.sh`` (``$AIGC_EDGE_REPO`` overrides)."""
    override = os.environ.get("AIGC_EDGE_REPO")
    candidates = [Path(override)] if override else []
    candidates += list(Path(__file__).resolve().parents)
    for cand in candidates:
        if (cand / "hack" / "localcluster.sh").is_file():
            return cand
    raise ClusterError(
        f"cannot find hack/localcluster.sh above {Path(__file__).resolve()} "
        "(set AIGC_EDGE_REPO to the repository root)"
    )


def hack_dir() -> Path:
    return repo_root() / "hack"


def cache_dir() -> Path:
    """``$AIGC_EDGE_CACHE`` or ``~/.cache/aigc-edge`` (same rule as the shell scripts)."""
    env = os.environ.get("AIGC_EDGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "aigc-edge"


def _parse_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if m:
            value = m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[m.group(1)] = value
    return out


def read_versions() -> dict[str, str]:
    """The pinned versions from ``hack/versions.env``."""
    return _parse_env_file(hack_dir() / "versions.env")


def component_bin(name: str) -> Path:
    """Path of a component binary, e.g. ``component_bin("kubectl")`` (may not be built yet)."""
    versions = read_versions()
    if name == "prometheus":
        return Path(versions.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))
    try:
        version = versions[_VERSION_KEY[name]]
    except KeyError as exc:
        raise ValueError(f"unknown component {name!r} (known: {', '.join(COMPONENTS)})") from exc
    return cache_dir() / "bin" / f"{name}-{version}" / name


def missing_components() -> list[str]:
    """Components whose binary (or kwok's stage configs) is not there yet."""
    missing = [n for n in COMPONENTS if not os.access(component_bin(n), os.X_OK)]
    stages = component_bin("kwok").parent / "stages" / ".ready"
    if "kwok" not in missing and not stages.is_file():
        missing.append("kwok")
    return missing


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


def build_components(log_path: Path | None = None, timeout: float | None = None) -> Path:
    """Run ``hack/build-components.sh`` (idempotent). Returns the log path.

    Raises :class:`ComponentsBuildError` with the log tail when the build fails.
    """
    if log_path is None:
        log_path = cache_dir() / "logs" / f"build-components-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        try:
            proc = subprocess.run(
                ["bash", str(hack_dir() / "build-components.sh")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ComponentsBuildError(
                f"hack/build-components.sh did not finish in {timeout}s; log {log_path}:\n{_tail(log_path)}",
                log_path,
            ) from None
    if proc.returncode != 0:
        raise ComponentsBuildError(
            f"hack/build-components.sh failed (exit {proc.returncode}); log {log_path}:\n{_tail(log_path)}",
            log_path,
        )
    return log_path


# --------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class ClusterInfo:
    """Where a running local cluster is (parsed from ``DIR/cluster.env``)."""

    dir: Path
    kubeconfig: Path
    apiserver_url: str
    prometheus_url: str
    kubectl: Path
    helm: Path
    nodes: int
    targets_dir: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env_file(cls, path: Path) -> ClusterInfo:
        env = _parse_env_file(path)
        try:
            return cls(
                dir=Path(env["CLUSTER_DIR"]),
                kubeconfig=Path(env["KUBECONFIG"]),
                apiserver_url=env["APISERVER_URL"],
                prometheus_url=env["PROMETHEUS_URL"],
                kubectl=Path(env["KUBECTL"]),
                helm=Path(env["HELM"]),
                nodes=int(env["NODES"]),
                targets_dir=Path(env["PROMETHEUS_TARGETS_DIR"]),
                env=env,
            )
        except KeyError as exc:
            raise ClusterError(f"{path} lacks {exc.args[0]}") from None

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for subprocesses: KUBECONFIG, PROMETHEUS_URL and kubectl/helm on PATH."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PROMETHEUS_URL"] = self.prometheus_url
        env["APISERVER_URL"] = self.apiserver_url
        extra = os.pathsep.join(dict.fromkeys([str(self.kubectl.parent), str(self.helm.parent)]))
        env["PATH"] = extra + os.pathsep + env.get("PATH", "")
        return env

    def kubectl_cmd(self, *args: str, kubeconfig: Path | None = None) -> list[str]:
        return [str(self.kubectl), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]


class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager + kwok (fake GPU nodes) + Prometheus.

    ``dir`` holds all state (certs, etcd data, logs, kubeconfig, ``cluster.env``). Ports are free
    loopback ports chosen at ``up()``, so several clusters can run side by side.
    """

    def __init__(
        self,
        dir: Path,  # noqa: A002 - the public name the callers use
        nodes: int = 4,
        *,
        controller_manager: bool = True,
        timeout: float = 300.0,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.dir = Path(dir).resolve()
        self.nodes = nodes
        self.controller_manager = controller_manager
        self.timeout = timeout
        self._info: ClusterInfo | None = None

    #: ``LocalCluster.component_bin("kubectl")`` -- same as the module-level function.
    component_bin = staticmethod(component_bin)

    # -- shell ------------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        cmd = ["bash", str(hack_dir() / "localcluster.sh"), *args, "--dir", str(self.dir)]
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout or self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stderr or b""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            raise ClusterError(f"{' '.join(cmd)} timed out after {exc.timeout}s:\n{out[-4000:]}") from None
        if proc.returncode != 0:
            raise ClusterError(
                f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                f"{(proc.stderr or '')[-4000:]}{(proc.stdout or '')[-2000:]}"
            )
        return proc

    # -- lifecycle --------------------------------------------------------------------------
    def up(self, build_missing: bool = False) -> ClusterInfo:
        """Start (or find running) the cluster; returns once nodes and Prometheus are ready.

        With ``build_missing`` the components are built first if needed (minutes, first time);
        otherwise missing components raise :class:`ClusterError`.
        """
        missing = missing_components()
        if missing and build_missing:
            build_components()
            missing = missing_components()
        if missing:
            raise ClusterError(
                f"components not built: {', '.join(missing)} (run hack/build-components.sh "
                "or aigc_operator.devcluster.build_components())"
            )
        args = ["up", "--nodes", str(self.nodes)]
        if not self.controller_manager:
            args.append("--no-controller-manager")
        self._run(*args)
        self._info = ClusterInfo.from_env_file(self.dir / "cluster.env")
        return self._info

    def down(self) -> None:
        """Stop every process this cluster started (safe to call twice)."""
        self._run("down", timeout=120)
        self._info = None

    def status(self) -> str:
        proc = subprocess.run(
            ["bash", str(hack_dir() / "localcluster.sh"), "status", "--dir", str(self.dir)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout

    @property
    def info(self) -> ClusterInfo:
        if self._info is None:
            env_file = self.dir / "cluster.env"
            if not env_file.is_file():
                raise ClusterError(f"no running cluster in {self.dir}; call up() first")
            self._info = ClusterInfo.from_env_file(env_file)
        return self._info

    def __enter__(self) -> ClusterInfo:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- fault injection --------------------------------------------------------------------
    def stop_component(self, name: str) -> None:
        """Stop one component (``kube-apiserver``, ``prometheus``, ``etcd``, ``kwok``, ...)."""
        self._run("stop-component", "--component", name, timeout=60)

    def start_component(self, name: str) -> None:
        """Start a stopped component again with its original command line; returns once ready."""
        self._run("start-component", "--component", name)
        self._info = None  # its PID changed in cluster.env

    def restart_component(self, name: str) -> None:
        self._run("restart-component", "--component", name)
        self._info = None

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _target_file_stem(job: str, host_port: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job}--{host_port}")

    def add_scrape_target(self, job: str, host_port: str, labels: Mapping[str, str] | None = None) -> Path:
        """Make Prometheus scrape ``http://host_port/metrics`` as ``job`` (picked up within ~2 s).

        One file per (job, host_port) under ``DIR/targets``; ``labels`` become target labels.
        """
        if not re.fullmatch(r"[^\s/]+:\d+", host_port):
            raise ValueError(f"host_port must look like 127.0.0.1:9400, got {host_port!r}")
        target_labels = {str(k): str(v) for k, v in (labels or {}).items()}
        target_labels["job"] = job
        targets = self.info.targets_dir
        targets.mkdir(parents=True, exist_ok=True)
        path = targets / f"{self._target_file_stem(job, host_port)}.json"
        tmp = path.with_suffix(".json.tmp")  # not matched by the *.json glob
        tmp.write_text(json.dumps([{"targets": [host_port], "labels": target_labels}], indent=2))
        os.replace(tmp, path)
        return path

    def remove_scrape_target(self, job: str, host_port: str | None = None) -> None:
        """Drop one target of ``job`` (or all of them when ``host_port`` is None)."""
        targets = self.info.targets_dir
        if host_port is not None:
            (targets / f"{self._target_file_stem(job, host_port)}.json").unlink(missing_ok=True)
            return
        prefix = self._target_file_stem(job, "")
        for p in targets.glob("*.json"):
            if p.name.startswith(prefix):
                p.unlink(missing_ok=True)

    def kubeconfig_for(
        self,
        namespace: str,
        serviceaccount: str,
        out: Path | None = None,
        duration: str = "24h",
    ) -> Path:
        """Mint a kubeconfig for an existing ServiceAccount (TokenRequest via ``kubectl create token``)."""
        if out is None:
            out = self.dir / "kubeconfigs" / f"{namespace}--{serviceaccount}.kubeconfig"
        self._run(
            "kubeconfig-for",
            "--namespace",
            namespace,
            "--serviceaccount",
            serviceaccount,
            "--out",
            str(out),
            "--duration",
            duration,
            timeout=60,
        )
        return Path(out)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (admin unless ``kubeconfig`` is given)."""
        return subprocess.run(
            self.info.kubectl_cmd(*args, kubeconfig=kubeconfig),
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )
