"""`aigc-edge operator`: run the AIGCTask scheduling operator (kopf) against the current cluster.

Configuration is by flags or AIGC_* environment variables (see --help and docs/operator.md).
Exit codes: 0 on a clean stop, 2 on bad configuration (perf profile, catalog, flags, no kubeconfig).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from aigc_operator import settings as settings_mod

VERBOSITY = {"quiet": {"quiet": True}, "normal": {}, "verbose": {"verbose": True}, "debug": {"debug": True}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    settings_mod.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # Imported here so `aigc-edge --help` stays light.
    import kopf
    from aigc_api.catalog import CatalogError, load_catalog
    from aigc_policy.cli import UsageError
    from aigc_policy.scenario import ScenarioError, load_scenario
    from kubernetes.config import ConfigException

    from aigc_operator.handlers import build_registry
    from aigc_operator.kube import KubeApi, load_kube_config
    from aigc_operator.policy_loader import load_policies
    from aigc_operator.runtime import Runtime

    settings = settings_mod.from_args(args)
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=log_format, **VERBOSITY[settings.verbosity])
    try:
        perf = load_scenario(settings.perf_profile).perf
    except ScenarioError as exc:
        raise UsageError(f"--perf-profile: {exc}") from None
    try:
        catalog = load_catalog(settings.catalog) if settings.catalog else None
    except (OSError, CatalogError) as exc:
        raise UsageError(f"--catalog: {exc}") from None
    policies = load_policies(settings.policy, settings.fallback_policy)
    try:
        load_kube_config()
    except ConfigException as exc:
        raise UsageError(f"no Kubernetes API to talk to: not in a cluster, and the kubeconfig is unusable ({exc})") from None
    runtime = Runtime(settings, policies, perf, catalog, KubeApi(settings.api_concurrency))
    logging.getLogger(__name__).warning(
        "aigc-edge operator starting: policy=%s fallback=%s prometheus=%s namespaces=%s",
        policies.primary.name if policies.primary else f"unavailable ({policies.error})",
        policies.fallback.name,
        settings.prometheus_url,
        ",".join(settings.watch_namespaces) or "all",
    )
    asyncio.run(
        kopf.operator(
            registry=build_registry(runtime),
            clusterwide=not settings.watch_namespaces,
            namespaces=settings.watch_namespaces,
            standalone=settings.peering is None,
            peering_name=settings.peering,
            liveness_endpoint=settings.liveness,
        )
    )
    return 0
