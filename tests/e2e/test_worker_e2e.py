"""The worker against the real local control plane: a placed AIGCTask ends Succeeded with a PNG.

The test writes the placement itself through aigc_api helpers, exactly as the operator would,
so it exercises the worker's watch, claim, heartbeat, Lease and status writes on a real API server.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aigc_api import GROUP, PLURAL, VERSION
from aigc_api import status as st
from aigc_api.api_errors import is_conflict
from aigc_api.catalog import load_catalog
from aigc_operator.devcluster import ClusterInfo, LocalCluster
from aigc_worker.cache import ModelCache
from aigc_worker.execution import Executor, GangSettings
from aigc_worker.kube import KubeTasks
from aigc_worker.metrics import WorkerMetrics
from aigc_worker.parallel.rendezvous import open_store
from aigc_worker.pipelines import Placement, load_model
from aigc_worker.results import DirectoryStore
from aigc_worker.service import ServiceConfig, Worker
from aigc_worker.tinymodels import CATALOG_FILE, tiny_model_name, write_tiny_models
from kubernetes import client, config
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "worker-e2e"
LEASES = "aigc-system"


@pytest.mark.e2e
def test_placed_task_succeeds_with_png(
    local_cluster: ClusterInfo, local_cluster_handle: LocalCluster, tmp_path: Path
) -> None:
    local_cluster_handle.kubectl(
        "apply", "-f", str(REPO / "operator" / "aigc_api" / "crds" / "aigctasks.yaml")
    )
    local_cluster_handle.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", "crd/aigctasks.aigc.edge.io"
    )
    for namespace in (NAMESPACE, LEASES):
        local_cluster_handle.kubectl("create", "namespace", namespace, check=False)

    write_tiny_models(tmp_path / "models", kinds=("sd-turbo",))
    catalog = load_catalog(tmp_path / "models" / CATALOG_FILE)
    store = open_store("127.0.0.1", 30)
    executor = Executor(
        catalog,
        ModelCache(1.0, lambda e: load_model(e, Placement())),
        DirectoryStore(tmp_path / "results"),
        WorkerMetrics(),
        GangSettings("gloo", 30, store),
        "edge-0",
    )
    api = KubeTasks.from_kubeconfig(str(local_cluster.kubeconfig), NAMESPACE)
    worker = Worker(
        api,
        executor,
        ServiceConfig(
            "edge-0",
            "worker-edge-0",
            "127.0.0.1:9200",
            f"127.0.0.1:{store.port}",
            LEASES,
            heartbeat_s=1.0,
            resync_s=10.0,
        ),
        on_queue=lambda _n: None,
    )
    stop = threading.Event()
    serving = threading.Thread(target=worker.serve, args=(stop,), daemon=True)
    serving.start()
    try:
        custom = client.CustomObjectsApi(
            config.new_client_from_config(config_file=str(local_cluster.kubeconfig))
        )
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "AIGCTask",
                "metadata": {"name": "cat"},
                "spec": {
                    "model": tiny_model_name("sd-turbo"),
                    "prompt": "a cat",
                    "width": 64,
                    "height": 64,
                    "steps": 2,
                    "seed": 5,
                },
            },
        )
        record = st.PlacementRecord(1, ("edge-0",), 2, "e2e", "v0", datetime.now(UTC), 0, 2000)
        st.guarded_update(
            read=lambda: api.get(NAMESPACE, "cat"),
            build=lambda body: st.placement_patch(
                body, record, datetime.now(UTC), ("True", "MetricsFresh", "")
            ),
            write=lambda patch: api.merge_patch_status(NAMESPACE, "cat", patch),
            is_conflict=is_conflict,
        )
        deadline = time.monotonic() + 120
        body = api.get(NAMESPACE, "cat")
        while st.phase_of(body) not in st.TERMINAL_PHASES and time.monotonic() < deadline:
            time.sleep(0.5)
            body = api.get(NAMESPACE, "cat")
        status = body["status"]
        assert status["phase"] == st.SUCCEEDED, status
        assert status["claims"][0]["holder"] == "worker-edge-0"
        path = Path(status["result"]["uri"].removeprefix("file://"))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == status["result"]["sha256"]
        assert Image.open(path).size == (64, 64)
        lease = client.CoordinationV1Api(custom.api_client).read_namespaced_lease(
            "aigc-worker-edge-0", LEASES
        )
        assert lease.spec.holder_identity == "worker-edge-0"
    finally:
        stop.set()
        serving.join(timeout=30)
