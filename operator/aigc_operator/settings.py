"""Operator configuration: one typed object built from flags, each flag also settable by env var."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "AIGC_"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    namespace: str = "aigc-system"  # where worker Leases live
    watch_namespaces: tuple[str, ...] = ()  # AIGCTask namespaces; empty: all
    policy: str = "eat"
    fallback_policy: str = "eft"
    perf_profile: str = "/etc/aigc/perf-profile.yaml"
    catalog: Path | None = None
    prometheus_url: str | None = None
    prometheus_timeout_s: float = 2.0
    metrics_poll_s: float = 5.0
    metrics_ttl_s: float = 120.0
    metrics_port: int = 9100
    liveness: str | None = "http://0.0.0.0:8080/healthz"
    max_attempts: int = 3
    heartbeat_ttl_s: float = 30.0
    claim_timeout_s: float = 60.0
    batch_size: int = 64
    tick_s: float = 1.0
    lease_poll_s: float = 2.0
    gpu_node_label: str = "aigc.edge.io/gpu-node=true"
    gpu_class_label: str = "aigc.edge.io/gpu-class"
    require_worker: bool = True
    api_concurrency: int = 16
    events: bool = True
    normal_events_per_s: float = 20.0  # Warnings are never rate-limited
    peering: str | None = None  # None: standalone (one replica, Recreate)
    log_format: str = "json"
    verbosity: str = "quiet"
    pod: dict[str, Any] | None = None  # the operator's own Pod (from POD_NAME/POD_NAMESPACE), for Events

    @property
    def gpu_label_pair(self) -> tuple[str, str]:
        key, _, value = self.gpu_node_label.partition("=")
        return key, value


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _flag(parser: argparse.ArgumentParser, name: str, default: object, help_text: str, **kw: object) -> None:
    env = ENV_PREFIX + name.upper().replace("-", "_")
    raw = _env(name, None)
    value = default if raw is None else raw
    parser.add_argument(
        f"--{name}", default=value, help=f"{help_text} (env {env}; default: %(default)s)", **kw
    )


def _bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = OperatorSettings()
    _flag(parser, "namespace", d.namespace, "namespace of the operator and the worker Leases")
    _flag(parser, "watch-namespaces", "", "comma-separated AIGCTask namespaces to serve; empty: all")
    _flag(
        parser,
        "policy",
        d.policy,
        "scheduling policy: eat | eat:PATH | ladts:PATH | eft | any registered name",
    )
    _flag(
        parser,
        "fallback-policy",
        d.fallback_policy,
        "deterministic policy used when metrics or the policy fail",
    )
    _flag(
        parser,
        "perf-profile",
        d.perf_profile,
        "latency/memory tables per GPU class (scenario YAML path or packaged name)",
    )
    _flag(
        parser,
        "catalog",
        None,
        "model catalog YAML (aigc-model-catalog ConfigMap); unset: any model accepted",
    )
    _flag(parser, "prometheus-url", None, "Prometheus base URL for GPU metrics; unset: always fallback")
    _flag(parser, "prometheus-timeout", d.prometheus_timeout_s, "seconds per Prometheus query", type=float)
    _flag(parser, "metrics-poll", d.metrics_poll_s, "seconds between Prometheus samples", type=float)
    _flag(
        parser,
        "metrics-ttl",
        d.metrics_ttl_s,
        "a node's metrics older than this are stale (seconds)",
        type=float,
    )
    _flag(parser, "metrics-port", d.metrics_port, "port of the operator's own /metrics; 0 disables", type=int)
    _flag(parser, "liveness", d.liveness, "kopf liveness endpoint URL; empty disables")
    _flag(parser, "max-attempts", d.max_attempts, "placements per task before it fails", type=int)
    _flag(
        parser,
        "heartbeat-ttl",
        d.heartbeat_ttl_s,
        "seconds a claim outlives its worker: caps the worker Lease duration (claim heartbeat when no Lease)",
        type=float,
    )
    _flag(
        parser,
        "claim-timeout",
        d.claim_timeout_s,
        "seconds for every rank to be claimed before re-placement",
        type=float,
    )
    _flag(parser, "batch-size", d.batch_size, "pending tasks considered per decision batch", type=int)
    _flag(parser, "tick", d.tick_s, "seconds between reviews of placed tasks", type=float)
    _flag(parser, "lease-poll", d.lease_poll_s, "seconds between reads of the worker Leases", type=float)
    _flag(parser, "gpu-node-label", d.gpu_node_label, "label key=value selecting GPU nodes")
    _flag(parser, "gpu-class-label", d.gpu_class_label, "node label holding the GPU class")
    _flag(
        parser, "require-worker", d.require_worker, "place only on nodes with a live worker Lease", type=_bool
    )
    _flag(parser, "api-concurrency", d.api_concurrency, "parallel API writes", type=int)
    _flag(parser, "events", d.events, "post Kubernetes Events for decisions", type=_bool)
    _flag(
        parser,
        "normal-events-per-s",
        d.normal_events_per_s,
        "at most this many Normal Events (Scheduled) per second, bursts of twice that; "
        "Warnings always go out",
        type=float,
    )
    _flag(parser, "peering", None, "kopf peering name for hot standby; unset: standalone")
    _flag(parser, "log-format", d.log_format, "json | plain")
    _flag(parser, "verbosity", d.verbosity, "quiet | normal | verbose | debug")


def from_args(args: argparse.Namespace) -> OperatorSettings:
    namespaces = tuple(n.strip() for n in (args.watch_namespaces or "").split(",") if n.strip())
    settings = OperatorSettings(
        namespace=args.namespace,
        watch_namespaces=namespaces,
        policy=args.policy,
        fallback_policy=args.fallback_policy,
        perf_profile=args.perf_profile,
        catalog=Path(args.catalog) if args.catalog else None,
        prometheus_url=args.prometheus_url or None,
        prometheus_timeout_s=float(args.prometheus_timeout),
        metrics_poll_s=float(args.metrics_poll),
        metrics_ttl_s=float(args.metrics_ttl),
        metrics_port=int(args.metrics_port),
        liveness=args.liveness or None,
        max_attempts=int(args.max_attempts),
        heartbeat_ttl_s=float(args.heartbeat_ttl),
        claim_timeout_s=float(args.claim_timeout),
        batch_size=int(args.batch_size),
        tick_s=float(args.tick),
        lease_poll_s=float(args.lease_poll),
        gpu_node_label=args.gpu_node_label,
        gpu_class_label=args.gpu_class_label,
        require_worker=_bool(args.require_worker),
        api_concurrency=int(args.api_concurrency),
        events=_bool(args.events),
        normal_events_per_s=float(args.normal_events_per_s),
        peering=args.peering or None,
        log_format=args.log_format,
        verbosity=args.verbosity,
        pod=_own_pod(),
    )
    validate(settings)
    return settings


def _own_pod() -> dict[str, Any] | None:
    name, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if not name or not namespace:
        return None
    meta = {"name": name, "namespace": namespace, "uid": os.environ.get("POD_UID")}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}


def validate(settings: OperatorSettings) -> None:
    from aigc_policy.cli import UsageError

    if settings.max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    if settings.batch_size < 1 or settings.api_concurrency < 1:
        raise UsageError("--batch-size and --api-concurrency must be at least 1")
    if not settings.normal_events_per_s >= 0:  # also refuses NaN
        raise UsageError(f"--normal-events-per-s must be >= 0, got {settings.normal_events_per_s}")
    if "=" not in settings.gpu_node_label:
        raise UsageError("--gpu-node-label must be key=value")
    if settings.log_format not in ("json", "plain"):
        raise UsageError("--log-format must be json or plain")
    if settings.verbosity not in ("quiet", "normal", "verbose", "debug"):
        raise UsageError("--verbosity must be quiet, normal, verbose or debug")
    for name in (
        "prometheus_timeout_s",
        "metrics_poll_s",
        "metrics_ttl_s",
        "heartbeat_ttl_s",
        "claim_timeout_s",
        "tick_s",
        "lease_poll_s",
    ):
        if getattr(settings, name) <= 0:
            raise UsageError(f"--{name.removesuffix('_s').replace('_', '-')} must be positive")
