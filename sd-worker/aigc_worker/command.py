"""`aigc-edge worker [run|profile|make-tiny-models]`: the SD worker's command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from aigc_policy.arguments import non_negative_int, positive_float, positive_int

if TYPE_CHECKING:
    from aigc_api.catalog import ModelCatalog

DEFAULT_METRICS_PORT = 9200


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _sizes(text: str) -> list[tuple[int, int]]:
    """--sizes: WxH items as the scenario format writes them, each side a positive multiple of 8."""
    from aigc_policy.errors import UsageError
    from aigc_policy.scenario import parse_resolution

    try:
        sizes = [parse_resolution(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(side < 8 or side % 8 for size in sizes for side in size):
        raise UsageError(f"--sizes must be WxH items, each side a positive multiple of 8, got {text!r}")
    return sizes


def _catalog_file(path: Path) -> ModelCatalog:
    """The --catalog file, or a one-line UsageError naming what is wrong with it."""
    from aigc_api.catalog import CatalogError, load_catalog
    from aigc_policy.errors import UsageError

    try:
        return load_catalog(path)
    except (OSError, CatalogError) as exc:
        raise UsageError(f"--catalog: {exc}") from None


def _add_placement(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=_env("AIGC_DEVICE", "cpu"), help="cpu, cuda or cuda:N")
    p.add_argument(
        "--dtype", default=_env("AIGC_DTYPE"), help="float32 / float16 / bfloat16 (default: fp16 on cuda)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(worker_command="run")
    sub = parser.add_subparsers(dest="worker_command", metavar="{run,profile,make-tiny-models}")

    run = sub.add_parser("run", help="serve AIGCTasks placed on this node (default)")
    run.add_argument("--node", default=_env("NODE_NAME"), help="this node's name (env NODE_NAME)")
    run.add_argument("--holder", default=_env("POD_NAME", socket.gethostname()), help="claim holder identity")
    run.add_argument("--catalog", type=Path, default=_env("AIGC_CATALOG"), help="catalog YAML file")
    run.add_argument("--catalog-configmap", help="namespace/name of a catalog ConfigMap instead of a file")
    run.add_argument("--namespace", default=_env("AIGC_TASK_NAMESPACE"), help="task namespace (default: all)")
    run.add_argument("--lease-namespace", default=_env("POD_NAMESPACE", "aigc-system"))
    run.add_argument("--kubeconfig", default=_env("KUBECONFIG"), help="default: in-cluster config")
    _add_placement(run)
    run.add_argument("--memory-budget-gb", type=positive_float, help="warm-model budget (default: device memory)")
    run.add_argument("--local-files-only", action="store_true", help="never contact a model hub")
    run.add_argument(
        "--results-dir", type=Path, default=Path(_env("AIGC_RESULTS_DIR", "/var/lib/aigc/results"))
    )
    run.add_argument(
        "--results-s3", help="bucket[/prefix] of an S3-compatible store instead of --results-dir"
    )
    run.add_argument("--s3-endpoint", default=_env("AIGC_S3_ENDPOINT"))
    run.add_argument("--metrics-port", type=non_negative_int, default=DEFAULT_METRICS_PORT)
    run.add_argument("--advertise-host", default=_env("POD_IP"), help="address peers and Prometheus reach")
    run.add_argument("--backend", help="torch.distributed backend (default: nccl on cuda, gloo on cpu)")
    run.add_argument(
        "--gang-timeout", type=positive_float, default=120.0, help="seconds to form a gang / per collective"
    )
    run.add_argument("--heartbeat", type=positive_float, default=5.0, help="claim and Lease renewal period, seconds")
    run.add_argument("--simulate", metavar="SCENARIO", help="sleep for this scenario's service times instead")
    run.add_argument(
        "--gpu-class", default=_env("AIGC_GPU_CLASS"), help="scenario class of this node (--simulate)"
    )
    run.add_argument("--time-scale", type=positive_float, default=1.0, help="--simulate: multiply sleeps by this")

    prof = sub.add_parser("profile", help="measure per-step and load seconds into a scenario class")
    prof.add_argument("--catalog", type=Path, required=True)
    prof.add_argument("--out", type=Path, required=True)
    prof.add_argument("--class-name", default=_env("AIGC_GPU_CLASS", "this-node"))
    prof.add_argument("--models", help="comma-separated subset of the catalog")
    prof.add_argument("--sizes", default="512x512", help="comma-separated WxH list")
    prof.add_argument("--steps", type=positive_int, default=8)
    prof.add_argument("--repeats", type=positive_int, default=3)
    _add_placement(prof)
    prof.add_argument("--world-size", type=positive_int, default=1, help="k > 1: run on k nodes at once (see docs)")
    prof.add_argument("--rank", type=non_negative_int, default=0)
    prof.add_argument("--rendezvous", default="", help="host:port rank 0 binds and the others join")
    prof.add_argument("--backend", default=None)

    tiny = sub.add_parser("make-tiny-models", help="write tiny random pipelines of every kind and a catalog")
    tiny.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    from aigc_policy.errors import UsageError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.worker_command == "make-tiny-models":
        from aigc_worker.tinymodels import CATALOG_FILE, write_tiny_models

        paths = write_tiny_models(args.out)
        print(f"wrote {len(paths)} tiny models and {args.out / CATALOG_FILE}")
        return 0
    if args.worker_command == "profile":
        return _profile(args)
    if not getattr(args, "node", None):
        raise UsageError("--node (or NODE_NAME) is required")
    return _serve(args)


def _placement(args: argparse.Namespace):  # noqa: ANN202
    from aigc_worker.pipelines import Placement

    dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    return Placement.parse(args.device, dtype)


def _profile(args: argparse.Namespace) -> int:
    from aigc_policy.errors import UsageError

    from aigc_worker.profile import profile_node, write_class

    sizes = _sizes(args.sizes)
    catalog = _catalog_file(args.catalog)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    unknown = sorted(set(models or ()) - {entry.name for entry in catalog})
    if unknown:
        raise UsageError(f"--models: {', '.join(unknown)} not in {args.catalog}")
    placement = _placement(args)
    measured = profile_node(
        catalog,
        placement,
        sizes,
        args.steps,
        args.repeats,
        models=models,
        world_size=args.world_size,
        rank=args.rank,
        rendezvous=args.rendezvous,
        backend=args.backend or ("nccl" if placement.device.startswith("cuda") else "gloo"),
    )
    if args.rank == 0:
        write_class(args.out, args.class_name, measured)
        print(f"wrote {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aigc_policy.errors import UsageError
    from kubernetes.config import ConfigException

    from aigc_worker.kube import KubeTasks
    from aigc_worker.metrics import WorkerMetrics
    from aigc_worker.results import DirectoryStore, S3Store
    from aigc_worker.service import ServiceConfig, Worker

    host = args.advertise_host or socket.gethostbyname(socket.gethostname())
    try:
        api = KubeTasks.from_kubeconfig(args.kubeconfig, args.namespace)
    except ConfigException as exc:
        where = f"--kubeconfig {args.kubeconfig}" if args.kubeconfig else "not in a cluster: give --kubeconfig"
        raise UsageError(f"no Kubernetes API to talk to ({where}): {exc}") from None
    metrics = WorkerMetrics()
    if args.results_s3:
        bucket, _, prefix = args.results_s3.partition("/")
        store = S3Store(bucket, prefix, args.s3_endpoint)
    else:
        store = DirectoryStore(args.results_dir)
    rendezvous_store = None
    if args.simulate:
        from aigc_policy.scenario import ScenarioError, load_scenario

        from aigc_worker.simulate import SimulatedExecutor

        if not args.gpu_class:
            raise UsageError("--simulate needs --gpu-class (or AIGC_GPU_CLASS)")
        try:
            perf = load_scenario(args.simulate).perf
        except ScenarioError as exc:
            raise UsageError(f"--simulate: {exc}") from None
        executor = SimulatedExecutor(perf, args.gpu_class, store, metrics, args.time_scale)
    else:
        executor, rendezvous_store = _real_executor(args, api, store, metrics, host)
    config = ServiceConfig(
        node=args.node,
        holder=args.holder,
        address=f"{host}:{args.metrics_port}",
        rendezvous=f"{host}:{rendezvous_store.port}" if rendezvous_store else None,
        lease_namespace=args.lease_namespace,
        heartbeat_s=args.heartbeat,
        rendezvous_timeout_s=args.gang_timeout,
    )
    worker = Worker(api, executor, config, on_queue=metrics.queue_length.set)
    if not args.simulate:
        executor.gang.wait_for_rendezvous = worker.wait_for_rendezvous
        executor.gang.gang_problem = worker.gang_problem
    metrics.serve(args.metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker.serve(stop)
    return 0


def _real_executor(args, api, store, metrics, host):  # noqa: ANN001, ANN202
    import torch
    from aigc_api.catalog import CatalogError
    from aigc_policy.errors import UsageError

    from aigc_worker.cache import ModelCache
    from aigc_worker.catalog import load_configmap_catalog
    from aigc_worker.execution import Executor, GangSettings
    from aigc_worker.parallel.rendezvous import open_store
    from aigc_worker.pipelines import load_model
    from aigc_worker.profile import device_memory_gb

    placement = _placement(args)
    if args.catalog_configmap:
        namespace, _, name = args.catalog_configmap.partition("/")
        try:
            catalog = load_configmap_catalog(api.custom.api_client, namespace, name)
        except CatalogError as exc:
            raise UsageError(f"--catalog-configmap: {exc}") from None
    elif args.catalog:
        catalog = _catalog_file(args.catalog)
    else:
        raise UsageError("--catalog or --catalog-configmap is required")

    def release(model: object) -> None:
        metrics.evictions.labels(model.entry.name).inc()
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    cache = ModelCache(
        args.memory_budget_gb or device_memory_gb(placement),
        lambda entry: load_model(entry, placement, args.local_files_only),
        release,
    )
    rendezvous_store = open_store("0.0.0.0", args.gang_timeout)
    gang = GangSettings(
        backend=args.backend or ("nccl" if placement.device.startswith("cuda") else "gloo"),
        timeout_s=args.gang_timeout,
        store=rendezvous_store,
    )
    return Executor(catalog, cache, store, metrics, gang, args.node), rendezvous_store
