"""`aigc-edge demo`: the whole system end to end on a real local control plane.

Starts kube-apiserver + etcd + kwok fake GPU nodes + Prometheus (hack/localcluster.sh), installs
the CRD and RBAC from manifests/, runs the operator and one worker per fake node as ordinary
processes (each with its own service-account token, CPU and tiny generated models registered
under the catalog names the examples use), submits a burst of AIGCTasks built from
manifests/examples with kubectl, waits for them and prints one row per task.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import yaml
from aigc_policy import policies
from aigc_policy.arguments import positive_float, positive_int

from aigc_operator import devcluster
from aigc_operator.devcluster import ClusterInfo, LocalCluster
from aigc_operator.devharness import DcgmExporter
from aigc_operator.gpu_metrics import PrometheusSampler
from aigc_operator.stack import CLI, OperatorOptions, Stack, WorkerOptions

TASK_NAMESPACE = "default"
TERMINAL = ("Succeeded", "Failed")
# Catalog names of the examples, served by tiny random pipelines of the same kind.
DEMO_MODELS = {"sd-turbo": "sd-turbo", "sd15": "sd15", "sdxl": "sdxl"}
TINY_MODELS_VERSION = "1"
WORKER_FLAGS = ("--device", "cpu", "--local-files-only")
FRESH_METRICS_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--nodes", type=int, default=4, help="fake GPU nodes (default: %(default)s)")
    parser.add_argument("--tasks", type=int, default=12, help="AIGCTasks in the burst (default: %(default)s)")
    parser.add_argument(
        "--policy", default="eat", help="operator policy (default: the shipped EAT ONNX policy)"
    )
    parser.add_argument("--timeout", type=positive_float, default=600.0, help="seconds to wait for the burst")
    parser.add_argument(
        "--max-side", type=positive_int, default=128, help="scale example images down to this many pixels a side (CPU)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="state directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster, operator and workers running")
    parser.add_argument(
        "--stop", type=Path, metavar="DIR", help="stop what a --keep run left in DIR, then exit"
    )


@dataclass(slots=True)
class TaskRow:
    name: str
    model: str
    phase: str
    nodes: str
    policy: str
    gang: int
    steps: int
    wait_s: float | None
    run_s: float | None
    deadline_met: str
    result: str


def run(args: argparse.Namespace) -> int:
    from aigc_policy.cli import UsageError

    if not 1 <= args.nodes <= 16:
        raise UsageError("--nodes must be between 1 and 16 for the demo")
    if args.tasks < 1:
        raise UsageError("--tasks must be at least 1")
    if args.stop:
        if not (args.stop / "pids.json").exists() and not (args.stop / "cluster").exists():
            raise UsageError(f"--stop {args.stop}: no demo kept there (no pids.json, no cluster/)")
        _stop_kept(args.stop)
        return 0
    try:  # the operator would fall back to earliest-finish; a demo should say the name is wrong first
        policies.make(args.policy)
    except ValueError as exc:
        raise UsageError(f"--policy {args.policy}: {exc}") from None
    state = args.dir or Path(tempfile.mkdtemp(prefix="aigc-demo-"))
    state.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(state / "cluster", nodes=args.nodes)
    stack = Stack(cluster, state, task_namespace=TASK_NAMESPACE)
    try:
        _say(1, "starting the local control plane (first run builds its components: several minutes)")
        info = cluster.up(build_missing=True)
        _say(2, "installing the CRD, namespace and RBAC from manifests/")
        stack.install()
        _say(3, "generating tiny Stable Diffusion pipelines (cached after the first run)")
        catalog = tiny_catalog(state)
        _say(4, f"starting the operator (policy {args.policy}), {args.nodes} workers and stand-in GPU metrics")
        # kwok nodes have no GPU for dcgm-exporter to read: a stand-in serves its format for them
        exporter = DcgmExporter(sorted(stack.node_classes()))
        cluster.add_scrape_target("dcgm", exporter.address)
        stack.start_operator(OperatorOptions(policy=args.policy, catalog=catalog, heartbeat_ttl_s=30.0))
        # One torch thread per worker: each stands for one GPU, and oversubscribed OpenMP pools on
        # a small machine slow every worker down many times over.
        stack.start_workers(
            WorkerOptions(simulate=None, catalog=catalog, extra=WORKER_FLAGS), env={"OMP_NUM_THREADS": "1"}
        )
        _wait_for_workers(info, args.nodes, timeout=180.0)
        _wait_until_the_operator_is_ready(stack, info, args.nodes, timeout=120.0)
        _say(5, f"submitting {args.tasks} AIGCTasks built from manifests/examples with kubectl")
        names = _submit_burst(info, args.tasks, args.max_side)
        rows = _wait_for(info, names, args.timeout)
        _say(6, "results")
        print(_table(rows))
        print(f"\nimages: {state / 'results'}\nlogs:   {state / 'logs'}")
        failed = [r for r in rows if r.phase != "Succeeded"]
        if args.keep:
            (state / "pids.json").write_text(json.dumps([p.pid for p in stack.processes()]))
            print(
                f"\nstill running (--keep). KUBECONFIG={info.kubeconfig}\nstop with: aigc-edge demo --stop {state}"
                "\n(the stand-in GPU metrics stopped with the demo: later tasks are placed by the fallback policy)"
            )
        return 1 if failed else 0
    except RuntimeError as exc:  # a component that did not come up: its log is in the state folder
        print(f"aigc-edge demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            stack.stop()
            cluster.down()


def _say(step: int, text: str) -> None:
    print(f"[{step}/6] {text}", flush=True)


def _repo() -> Path:
    return devcluster.repo_root()


def _kubectl(info: ClusterInfo, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        info.kubectl_cmd(*args), input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _wait_for_workers(info: ClusterInfo, count: int, timeout: float) -> None:
    """Until every worker has published its Lease, so the burst meets a ready cluster."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leases = json.loads(_kubectl(info, "get", "leases", "-n", "aigc-system", "-o", "json"))["items"]
        if sum(1 for lease in leases if lease["metadata"]["name"].startswith("aigc-worker-")) >= count:
            return
        time.sleep(1.0)
    raise RuntimeError(f"workers did not all start within {timeout:.0f}s; see the logs folder")


def _wait_until_the_operator_is_ready(stack: Stack, info: ClusterInfo, count: int, timeout: float) -> None:
    """Until Prometheus holds a fresh GPU sample of every node, the operator has read one and it
    sees every worker's Lease alive: a burst that meets stale metrics (MetricsStale) or fewer nodes
    than the policy encodes (PolicyFailed) is placed by the fallback, and the demo would show that
    policy instead of the one it runs."""
    sampler = PrometheusSampler(info.prometheus_url, timeout_s=3.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reading = sampler.sample()
        health = stack.operator_health() or {}
        fresh = reading.up and len(reading.nodes) >= count and all(
            sample.age_s < FRESH_METRICS_S for sample in reading.nodes.values()
        )
        workers_seen = health.get("workersAlive", 0) >= count
        if fresh and workers_seen and "fallbackActive" in health and health["fallbackActive"] is None:
            return
        time.sleep(1.0)
    raise RuntimeError(
        f"node GPU metrics were not fresh in Prometheus, or the operator did not see all {count} workers, "
        f"within {timeout:.0f}s; see the logs folder"
    )


def tiny_catalog(state: Path) -> Path:
    """Tiny pipelines, built once per version into the cache, listed under the examples' names."""
    models = devcluster.cache_dir() / f"tiny-models-v{TINY_MODELS_VERSION}"
    if not (models / ".complete").exists():
        shutil.rmtree(models, ignore_errors=True)
        _run_cli("worker", "make-tiny-models", "--out", str(models))
        (models / ".complete").touch()
    entries = [
        {"name": name, "source": (models / f"tiny-{kind}").as_uri(), "pipeline": kind, "vramGb": 0.5}
        for name, kind in DEMO_MODELS.items()
    ]
    path = state / "catalog.yaml"
    path.write_text(yaml.safe_dump({"models": entries}, sort_keys=False))
    return path


def _run_cli(*args: str) -> None:
    subprocess.run([*CLI, *args], check=True)


def _examples() -> list[dict]:
    folder = _repo() / "manifests" / "examples"
    docs = [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))]
    return [d for d in docs if d and d.get("kind") == "AIGCTask" and d["spec"]["model"] in DEMO_MODELS]


def _submit_burst(info: ClusterInfo, count: int, max_side: int) -> list[str]:
    examples = _examples()
    if not examples:
        raise RuntimeError("manifests/examples holds no AIGCTask for the demo models")
    names, docs = [], []
    for i in range(count):
        doc = json.loads(json.dumps(examples[i % len(examples)]))
        doc["metadata"] = {"name": f"demo-{i:02d}-{doc['metadata']['name']}", "namespace": TASK_NAMESPACE}
        doc["spec"]["seed"] = i
        _shrink(doc["spec"], max_side)
        names.append(doc["metadata"]["name"])
        docs.append(doc)
    _kubectl(info, "create", "-f", "-", stdin=yaml.safe_dump_all(docs))
    return names


def _shrink(spec: dict, max_side: int) -> None:
    """Scale a task's image down (aspect kept, multiples of 8) so tiny CPU pipelines stay quick."""
    scale = min(1.0, max_side / max(spec.get("width", 512), spec.get("height", 512)))
    for side in ("width", "height"):
        spec[side] = max(64, int(spec.get(side, 512) * scale) // 8 * 8)


def _wait_for(info: ClusterInfo, names: list[str], timeout: float) -> list[TaskRow]:
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    wanted = set(names)
    with tqdm(total=len(names), desc="tasks finished", unit="task", mininterval=5.0) as bar:
        while True:
            items = json.loads(_kubectl(info, "get", "aigct", "-n", TASK_NAMESPACE, "-o", "json"))["items"]
            mine = [i for i in items if i["metadata"]["name"] in wanted]
            done = sum(1 for i in mine if i.get("status", {}).get("phase") in TERMINAL)
            bar.update(done - bar.n)
            if done == len(names) or time.monotonic() > deadline:
                return sorted((_row(i) for i in mine), key=lambda r: r.name)
            time.sleep(1.0)


def _row(item: dict) -> TaskRow:
    spec, status = item["spec"], item.get("status", {})
    placement, timings = status.get("placement", {}), status.get("timings", {})
    wait_s = _seconds(timings.get("waitMillis"))
    run_s = _seconds(timings.get("runMillis"))
    deadline = spec.get("qos", {}).get("deadlineSeconds")
    met = (
        "-"
        if deadline is None or wait_s is None or run_s is None
        else ("yes" if wait_s + run_s <= deadline else "no")
    )
    result = status.get("result", {}).get("uri") or status.get("failure", {}).get("reason", "")
    return TaskRow(
        name=item["metadata"]["name"],
        model=spec["model"],
        phase=status.get("phase", "Pending"),
        nodes=",".join(placement.get("nodes", [])),
        policy=_policy_label(placement),
        gang=int(placement.get("gangSize", 0)),
        steps=int(placement.get("steps", 0)),
        wait_s=wait_s,
        run_s=run_s,
        deadline_met=met,
        result=result,
    )


def _policy_label(placement: dict) -> str:
    """The policy that placed the task; a fallback names its reason (say, eft: MetricsStale)."""
    policy, reason = placement.get("policy", "-"), placement.get("fallbackReason")
    return f"{policy}: {reason}" if reason else policy


def _seconds(millis: object) -> float | None:
    return None if millis is None else int(millis) / 1000.0


def _table(rows: list[TaskRow]) -> str:
    head = "| task | model | phase | nodes | placed by | gang | steps | wait s | run s | deadline met | result |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        wait = "-" if r.wait_s is None else f"{r.wait_s:.2f}"
        run = "-" if r.run_s is None else f"{r.run_s:.2f}"
        lines.append(
            f"| {r.name} | {r.model} | {r.phase} | {r.nodes} | {r.policy} | {r.gang} | {r.steps} | {wait} | {run} "
            f"| {r.deadline_met} | {r.result} |"
        )
    return "\n".join(lines)


def _stop_kept(state: Path) -> None:
    pids = json.loads((state / "pids.json").read_text()) if (state / "pids.json").exists() else []
    for pid in pids:
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    LocalCluster(state / "cluster").down()
