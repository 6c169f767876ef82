"""The reliability lane's shared pieces: task bursts, a placement recorder, the execution ledger
and the audit that turns them into the figures every scenario prints.

Used by the tests in this folder and by bench/ scripts (which put this folder on sys.path).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigc_api import GROUP, PLURAL, VERSION
from aigc_api import status as st
from aigc_api.clock import parse_time
from aigc_api.lease import WorkerStatus, from_lease_body
from aigc_operator.devcluster import LocalCluster
from aigc_operator.devharness import wait_for
from aigc_operator.stack import NAMESPACE, OperatorOptions, Stack, WorkerOptions

LEDGER_WORKER = Path(__file__).with_name("ledger_worker.py")
LAUNCHER = (sys.executable, str(LEDGER_WORKER))
FIGURES_ENV = "AIGC_RELIABILITY_OUT"  # JSON Lines file the figures are appended to, if set
PROMPTS = ("a red fox in snow", "lighthouse at dusk, oil painting", "isometric city block, neon rain")


def int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def float_env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# ------------------------------------------------------------------ API access


def custom_api(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))


def task_doc(
    name: str,
    namespace: str,
    *,
    model: str = "sd-turbo",
    size: int = 512,
    steps: tuple[int, int] = (1, 4),
    gang_sizes: Sequence[int] | None = None,
    deadline_s: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": model, "prompt": PROMPTS[hash(name) % len(PROMPTS)], "width": size}
    spec["height"] = size
    if steps[0] == steps[1]:
        spec["steps"] = steps[0]
    else:
        spec["minSteps"], spec["maxSteps"] = steps
    if gang_sizes:
        spec["gangSizes"] = list(gang_sizes)
    if deadline_s is not None:
        spec["qos"] = {"deadlineSeconds": deadline_s}
    if seed is not None:
        spec["seed"] = seed
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIGCTask",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def burst_docs(prefix: str, namespace: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    """sd-turbo 512 px tasks: every GPU class of edge-hetero can run them, so every node is used."""
    return [task_doc(f"{prefix}-{i:04d}", namespace, seed=i) for i in range(start, start + count)]


class Tasks:
    """AIGCTasks of one namespace, through the admin credentials of the test itself."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.api = custom_api(kubeconfig)
        self.namespace = namespace

    def create(self, docs: Sequence[dict[str, Any]]) -> list[str]:
        names = []
        for doc in docs:
            self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, doc)
            names.append(doc["metadata"]["name"])
        return names

    def list(self) -> list[dict[str, Any]]:
        return self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]

    def wait_terminal(
        self,
        names: Sequence[str],
        timeout: float,
        poll: float = 1.0,
        on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Every named task once all are Succeeded/Failed, or whatever they are at the timeout."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        mine: dict[str, dict[str, Any]] = {}
        while True:
            with suppress(Exception):  # the API server may be restarting
                mine = {b["metadata"]["name"]: b for b in self.list() if b["metadata"]["name"] in wanted}
                if on_poll is not None:
                    on_poll(list(mine.values()))
                if len(mine) == len(wanted) and all(st.is_terminal(b) for b in mine.values()):
                    return mine
            if time.monotonic() > deadline:
                return mine
            time.sleep(poll)


class PlacementWatch:
    """Watches a namespace's AIGCTasks and keeps every distinct placement it sees.

    A task placed twice for one attempt would show two different (decisionTime, nodes) for the
    same (uid, attempt); the watch is resumed after API-server restarts (relisting on 410 Gone).
    """

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.api = custom_api(kubeconfig)
        self.namespace = namespace
        self.placements: dict[tuple[str, int], set[tuple[str, tuple[str, ...]]]] = defaultdict(set)
        self.names: dict[str, str] = {}
        self.reconnects = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="placement-watch", daemon=True)

    def start(self) -> PlacementWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=70)

    def _record(self, body: dict[str, Any]) -> None:
        raw = st.status_of(body).get("placement")
        if not raw:
            return
        uid = body["metadata"]["uid"]
        with self._lock:
            self.names[uid] = body["metadata"]["name"]
            self.placements[(uid, int(raw["attempt"]))].add((raw["decisionTime"], tuple(raw["nodes"])))

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                listing = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
                for item in listing["items"]:
                    self._record(item)
                rv = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    self.api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=rv,
                    timeout_seconds=5,
                )
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(event["object"])
                    if self._stop.is_set():
                        return
            except Exception:
                self.reconnects += 1
                self._stop.wait(0.5)

    def placed_twice(self) -> list[tuple[str, int]]:
        with self._lock:
            return [key for key, seen in self.placements.items() if len(seen) > 1]

    def placements_on(self, node: str, after: datetime) -> list[tuple[str, int, str]]:
        """(task, attempt, decisionTime) of placements onto `node` decided after `after`."""
        with self._lock:
            out = []
            for (uid, attempt), seen in self.placements.items():
                for decided, nodes in seen:
                    moment = parse_time(decided)
                    if node in nodes and moment is not None and moment > after:
                        out.append((self.names.get(uid, uid), attempt, decided))
            return out


# ------------------------------------------------------------------ ledger and audit


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Audit:
    tasks: int
    succeeded: int
    failed: int
    lost: int  # not Succeeded/Failed at the end
    placed_twice: int  # (task, attempt) seen with two different placements
    executed_twice: int  # (task, attempt, rank) run to completion more than once (worker side)
    interrupted: int  # rank runs that started and never ended (their worker was killed)
    stale_results: int  # Succeeded with a result of an attempt other than the final one
    succeeded_unexecuted: int  # Succeeded without a successful rank-0 run of the final attempt
    re_executions: int  # tasks run under more than one attempt (expected only after faults)
    max_attempts_seen: int
    failure_reasons: dict[str, int] = field(default_factory=dict)
    unrecorded_failures: int = 0  # Failed without status.failure.reason

    def zero_loss_and_duplicates(self) -> bool:
        return (
            self.lost == 0
            and self.placed_twice == 0
            and self.executed_twice == 0
            and self.stale_results == 0
            and self.succeeded_unexecuted == 0
            and self.unrecorded_failures == 0
        )


def audit(
    bodies: dict[str, dict[str, Any]],
    expected: int,
    ledger: list[dict[str, Any]],
    watch: PlacementWatch | None,
) -> Audit:
    starts = Counter((e["uid"], e["attempt"], e["rank"], e["pid"]) for e in ledger if e["ev"] == "start")
    ends = Counter((e["uid"], e["attempt"], e["rank"], e["pid"]) for e in ledger if e["ev"] == "end")
    completed = Counter((e["uid"], e["attempt"], e["rank"]) for e in ledger if e["ev"] == "end")
    ok_rank0 = {(e["uid"], e["attempt"]) for e in ledger if e["ev"] == "end" and e["ok"] and e["rank"] == 0}
    attempts_run: dict[str, set[int]] = defaultdict(set)
    for uid, attempt, _, _ in starts:
        attempts_run[uid].add(attempt)
    phases = Counter(st.phase_of(b) for b in bodies.values())
    stale = unexecuted = unrecorded = 0
    reasons: Counter[str] = Counter()
    for body in bodies.values():
        placement = st.parse_placement(body)
        uid = body["metadata"]["uid"]
        if st.phase_of(body) == st.SUCCEEDED:
            uri = (st.status_of(body).get("result") or {}).get("uri", "")
            # results are stored under <name>-attempt<N>.png (aigc_worker.results.result_key)
            if placement is None or not uri.endswith(f"-attempt{placement.attempt}.png"):
                stale += 1
            if placement is None or (uid, placement.attempt) not in ok_rank0:
                unexecuted += 1
        elif st.phase_of(body) == st.FAILED:
            reason = (st.status_of(body).get("failure") or {}).get("reason")
            if not reason:
                unrecorded += 1
            reasons[reason or "?"] += 1
    return Audit(
        tasks=expected,
        succeeded=phases[st.SUCCEEDED],
        failed=phases[st.FAILED],
        lost=expected - phases[st.SUCCEEDED] - phases[st.FAILED],
        placed_twice=len(watch.placed_twice()) if watch else 0,
        executed_twice=sum(1 for n in completed.values() if n > 1),
        interrupted=sum(max(0, n - ends[key]) for key, n in starts.items()),
        stale_results=stale,
        succeeded_unexecuted=unexecuted,
        re_executions=sum(1 for a in attempts_run.values() if len(a) > 1),
        max_attempts_seen=max(
            (int(st.status_of(b).get("attempts") or 0) for b in bodies.values()), default=0
        ),
        failure_reasons=dict(reasons),
        unrecorded_failures=unrecorded,
    )


def report(scenario: str, figures: dict[str, Any]) -> None:
    """Print the scenario's figures (pytest -s shows them) and append them to $AIGC_RELIABILITY_OUT."""
    line = {"scenario": scenario, **figures}
    print(f"\nRELIABILITY {json.dumps(line, sort_keys=False)}", flush=True)
    out = os.environ.get(FIGURES_ENV)
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")


def figures_of(result: Audit, **extra: Any) -> dict[str, Any]:
    return {**asdict(result), **extra}


# ------------------------------------------------------------------ one scenario's stack


class Scenario:
    """A namespace, the operator and one ledger-recording worker per node, and a placement watch."""

    def __init__(self, cluster: LocalCluster, state: Path, namespace: str) -> None:
        self.cluster = cluster
        self.state = state
        self.namespace = namespace
        self.ledger_path = state / "ledger.jsonl"
        self.stack = Stack(cluster, state, task_namespace=namespace)
        self.tasks = Tasks(cluster.info.kubeconfig, namespace)
        self.watch: PlacementWatch | None = None

    def start(
        self,
        operator: OperatorOptions,
        workers: WorkerOptions,
        nodes: Sequence[str] | None = None,
        ready_timeout: float = 120.0,
    ) -> Scenario:
        self.cluster.kubectl("create", "namespace", self.namespace, check=False)
        self.stack.start_operator(operator)
        self.start_workers(workers, nodes, ready_timeout)
        self.watch = PlacementWatch(self.cluster.info.kubeconfig, self.namespace).start()
        return self

    def start_workers(
        self, workers: WorkerOptions, nodes: Sequence[str] | None = None, ready_timeout: float = 120.0
    ) -> None:
        since = time.time()
        started = self.stack.start_workers(
            workers, nodes, launcher=LAUNCHER, env={"AIGC_EXECUTION_LEDGER": str(self.ledger_path)}
        )
        self.wait_workers(list(nodes or started), since, ready_timeout)

    def restart_worker(self, node: str, workers: WorkerOptions, ready_timeout: float = 120.0) -> None:
        since = time.time()
        self.stack.workers[node].restart()
        self.wait_workers([node], since, ready_timeout)

    def wait_workers(self, nodes: Sequence[str], since: float, timeout: float) -> None:
        """Until each node's worker Lease was (re)acquired after `since`: the worker is serving."""
        from kubernetes import client, config

        coordination = client.CoordinationV1Api(
            config.new_client_from_config(config_file=str(self.cluster.info.kubeconfig))
        )
        deadline = time.monotonic() + timeout
        waiting = set(nodes)
        while waiting:
            for node in list(waiting):
                with suppress(Exception):
                    lease = coordination.read_namespaced_lease(f"aigc-worker-{node}", NAMESPACE)
                    acquired = lease.spec.acquire_time
                    if acquired is not None and acquired.timestamp() >= since - 1:
                        waiting.discard(node)
                proc = self.stack.workers.get(node)
                if proc is not None and not proc.alive():
                    raise RuntimeError(f"worker on {node} exited:\n{proc.log_tail()}")
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"workers not serving after {timeout}s: {sorted(waiting)}")
            time.sleep(0.5)

    def ledger(self) -> list[dict[str, Any]]:
        return read_ledger(self.ledger_path)

    def audit(self, bodies: dict[str, dict[str, Any]], expected: int) -> Audit:
        return audit(bodies, expected, self.ledger(), self.watch)

    def why_waiting(self, bodies: dict[str, dict[str, Any]], limit: int = 20) -> str:
        """One line per unfinished task: its placement and claims, its nodes' worker Leases as the
        API server has them, and whether the ledger saw its current attempt start."""
        from kubernetes import client, config

        coordination = client.CoordinationV1Api(
            config.new_client_from_config(config_file=str(self.cluster.info.kubeconfig))
        )
        leases: dict[str, WorkerStatus] = {}
        with suppress(Exception):
            for lease in coordination.list_namespaced_lease(NAMESPACE).items:
                status = from_lease_body(coordination.api_client.sanitize_for_serialization(lease))
                if status is not None:
                    leases[status.node] = status
        started = {(e["uid"], e["attempt"]) for e in self.ledger() if e["ev"] == "start"}
        now = datetime.now(UTC)
        lines = []
        for name, body in sorted(bodies.items()):
            if st.is_terminal(body):
                continue
            placement = st.parse_placement(body)
            if placement is None:
                lines.append(f"{name}: {st.phase_of(body)}, not placed")
                continue
            claims = {r: f"{c.holder}@{c.node}" for r, c in st.current_claims(body).items()}
            nodes = {
                n: "no Lease" if n not in leases else
                f"{leases[n].holder} renewed {(now - leases[n].renew_time).total_seconds():.0f}s ago"
                for n in placement.nodes
            }  # fmt: skip
            ran = (body["metadata"]["uid"], placement.attempt) in started
            lines.append(
                f"{name}: {st.phase_of(body)}, attempt {placement.attempt} on {nodes}, "
                f"claims {claims or 'none'}, started per ledger: {ran}"
            )
        more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
        return "\n".join(lines[:limit]) + more

    def logs_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(25)}" for p in self.stack.processes())

    def process_figures(self) -> dict[str, int]:
        """How many operator and worker processes are alive, and how often any was restarted."""
        procs = self.stack.processes()
        return {"process_restarts": sum(p.starts - 1 for p in procs), "processes_alive": sum(p.alive() for p in procs)}

    def same_processes_throughout(self) -> bool:
        """Every process still alive and never restarted: they reconnected on their own."""
        return all(p.alive() and p.starts == 1 for p in self.stack.processes())

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        self.stack.stop()
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)


@contextmanager
def scenario(
    cluster: LocalCluster,
    state: Path,
    namespace: str,
    operator: OperatorOptions,
    workers: WorkerOptions,
    nodes: Sequence[str] | None = None,
) -> Iterator[Scenario]:
    sc = Scenario(cluster, state, namespace)
    try:
        yield sc.start(operator, workers, nodes)
    finally:
        sc.stop()


def jitter(rng: random.Random, low: float, high: float) -> float:
    return rng.uniform(low, high)


# ------------------------------------------------------------------ small helpers


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`, in Prometheus text format."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def condition(body: dict[str, Any], cond_type: str) -> dict[str, Any]:
    for cond in st.status_of(body).get("conditions") or ():
        if cond.get("type") == cond_type:
            return cond
    return {}


KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def set_node_ready(cluster: LocalCluster, node: str, ready: bool) -> None:
    """NotReady: kwok stops managing the node first, or its node-initialize stage would flip it back."""
    if not ready:
        cluster.kubectl("annotate", "node", node, f"{KWOK_ANNOTATION}=paused", "--overwrite")
    status = "True" if ready else "False"
    patch = {"status": {"conditions": [{"type": "Ready", "status": status, "reason": "ReliabilityTest"}]}}
    cluster.kubectl(
        "patch", "node", node, "--subresource=status", "--type=strategic", "-p", json.dumps(patch)
    )
    if ready:
        cluster.kubectl("annotate", "node", node, f"{KWOK_ANNOTATION}=fake", "--overwrite")


def restore_nodes(cluster: LocalCluster) -> None:
    """Re-create deleted fake nodes and make every one Ready again (kwok re-initializes them)."""
    cluster.kubectl("apply", "-f", str(cluster.info.dir / "nodes.yaml"))
    for i in range(cluster.info.nodes):
        set_node_ready(cluster, f"edge-{i}", True)
    wait_for(
        lambda: cluster.kubectl(
            "get", "nodes", "-l", "aigc.edge.io/gpu-node=true",
            "-o", 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}',
        ).stdout.split().count("True") == cluster.info.nodes,
        60,
        "all fake nodes Ready again",
    )  # fmt: skip


def running_on(ledger: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    """Ledger `start`s on `node` without their `end`: what its worker is running now."""
    ended = {(e["uid"], e["attempt"], e["rank"], e["pid"]) for e in ledger if e["ev"] == "end"}
    return [
        e
        for e in ledger
        if e["ev"] == "start"
        and e["node"] == node
        and (e["uid"], e["attempt"], e["rank"], e["pid"]) not in ended
    ]
