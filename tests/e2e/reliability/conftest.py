"""Fixtures of the reliability lane: the session's local control plane with the CRD and RBAC
installed, and the scenario harness (see harness.py). Burst sizes and fault timings are read from
AIGC_REL_* environment variables so bench/reliability.sh can run the same tests bigger."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from aigc_operator.devcluster import LocalCluster  # noqa: E402
from aigc_operator.stack import Stack  # noqa: E402


@pytest.fixture(scope="session")
def rel_cluster(local_cluster_handle: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> LocalCluster:
    """The session cluster with namespace, CRD and RBAC from manifests/ applied."""
    Stack(local_cluster_handle, tmp_path_factory.mktemp("install")).install()
    return local_cluster_handle
