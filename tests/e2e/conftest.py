"""Fixtures for the end-to-end lane: a real local control plane (hack/localcluster.sh).

``local_cluster`` (session scope) builds the components if needed (before the first e2e test
runs, so the build is not counted against a test's timeout), brings a cluster up in a
temporary directory, yields its :class:`ClusterInfo` and tears it down. Nothing is skipped:
if the components cannot be built or the cluster does not come up, every test that uses the
fixture ERRORS with the build/startup log tail.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO / "operator") not in sys.path:  # works without `pip install -e .` too
    sys.path.insert(0, str(_REPO / "operator"))

from aigc_operator import devcluster  # noqa: E402
from aigc_operator.devcluster import ClusterInfo, LocalCluster  # noqa: E402

E2E_NODES = int(os.environ.get("AIGC_E2E_NODES", "4"))

_build_error: str | None = None


def _uses_local_cluster(item: pytest.Item) -> bool:
    return "local_cluster" in getattr(item, "fixturenames", ()) or "local_cluster_handle" in getattr(
        item, "fixturenames", ()
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build missing components once, up front, if any selected test needs the cluster."""
    global _build_error
    if session.config.option.collectonly or not any(_uses_local_cluster(i) for i in session.items):
        return
    missing = devcluster.missing_components()
    if not missing:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    log_path = devcluster.cache_dir() / "logs" / f"build-components-{time.strftime('%Y%m%d-%H%M%S')}.log"
    if reporter is not None:
        reporter.write_line(
            f"e2e: building local control-plane components ({', '.join(missing)}); "
            f"first time takes several minutes; log: {log_path}"
        )
    t0 = time.monotonic()
    try:
        devcluster.build_components(log_path=log_path)
    except devcluster.ComponentsBuildError as exc:
        _build_error = str(exc)
        return
    if reporter is not None:
        reporter.write_line(f"e2e: components built in {time.monotonic() - t0:.0f}s")


@pytest.fixture(scope="session")
def local_cluster_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The :class:`LocalCluster` object (for add_scrape_target / kubeconfig_for / kubectl)."""
    if _build_error is not None:
        pytest.fail(f"local control-plane components could not be built:\n{_build_error}", pytrace=False)
    missing = devcluster.missing_components()
    if missing:  # e.g. the hook did not run (plugin disabled): build now
        try:
            devcluster.build_components()
        except devcluster.ComponentsBuildError as exc:
            pytest.fail(f"local control-plane components could not be built:\n{exc}", pytrace=False)
    cluster = LocalCluster(tmp_path_factory.mktemp("localcluster"), nodes=E2E_NODES)
    try:
        cluster.up()
    except devcluster.ClusterError as exc:
        try:
            cluster.down()
        finally:
            pytest.fail(f"local cluster did not come up:\n{exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def local_cluster(local_cluster_handle: LocalCluster) -> ClusterInfo:
    """ClusterInfo of the running local cluster (kubeconfig, URLs, kubectl and helm paths)."""
    return local_cluster_handle.info
