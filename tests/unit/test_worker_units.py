"""Worker pieces without torch.distributed or a cluster: layout, cache, results, catalog."""

from __future__ import annotations

import json
import re
import stat

import numpy as np
import pytest
from aigc_api.catalog import CatalogError, ModelEntry, parse_catalog
from aigc_worker.cache import ModelCache, ModelTooLarge
from aigc_worker.parallel.layout import GangLayoutError, plan_layout
from aigc_worker.parallel.rendezvous import is_collective_failure
from aigc_worker.results import DirectoryStore, encode_png, result_key
from PIL import Image


def test_layout_splits_cfg_first_then_rows() -> None:
    assert (
        plan_layout(2, 1, True, True, 64, 8).cfg_degree,
        plan_layout(2, 1, True, True, 64, 8).patch_degree,
    ) == (2, 1)
    four = plan_layout(4, 3, True, True, 64, 8)
    assert (four.cfg_degree, four.patch_degree, four.cfg_index, four.patch_index) == (2, 2, 1, 1)
    assert four.output_ranks() == [[0, 1], [2, 3]]
    no_cfg = plan_layout(4, 2, False, True, 64, 8)
    assert (no_cfg.cfg_degree, no_cfg.patch_degree, no_cfg.patch_index) == (1, 4, 2)


def test_layout_without_patches_replicates_and_rejects_bad_sizes() -> None:
    transformer = plan_layout(4, 3, True, False, 64, 1)
    assert (transformer.patch_degree, transformer.output_ranks()) == (1, [[0], [2]])
    with pytest.raises(GangLayoutError):
        plan_layout(8, 0, True, True, 24, 8)  # 4 patches of 6 rows cannot downsample 3 times
    with pytest.raises(GangLayoutError):
        plan_layout(3, 0, True, True, 64, 8)


def _entry(name: str, gb: float) -> ModelEntry:
    return ModelEntry(name, f"file:///{name}", "sd15", gb)


def test_cache_is_lru_within_budget_and_records_events() -> None:
    released: list[str] = []
    cache: ModelCache[str] = ModelCache(10.0, lambda e: e.name, released.append)
    assert cache.get(_entry("a", 4))[1] is not None
    cache.get(_entry("b", 4))
    assert cache.get(_entry("a", 4))[1] is None  # warm, now most recent
    cache.get(_entry("c", 4))  # evicts b, the least recently used
    assert cache.resident == ["a", "c"] and released == ["b"]
    assert [e.model for e in cache.loads] == ["a", "b", "c"] and [e.model for e in cache.evictions] == ["b"]
    with pytest.raises(ModelTooLarge):
        cache.get(_entry("huge", 11))


def test_png_carries_metadata_and_is_not_world_writable(tmp_path) -> None:
    store = DirectoryStore(tmp_path / "results")
    png = encode_png(
        np.linspace(0, 1, 8 * 8 * 3).reshape(8, 8, 3),
        {"prompt": "cat", "seed": 3, "placement": {"nodes": ["a"]}},
    )
    stored = store.put(result_key("ns", "task", 2), png)
    path = tmp_path / "results" / "ns" / "task-attempt2.png"
    assert stored.uri == path.as_uri() and stored.size_bytes == len(png)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    text = Image.open(path).text
    assert text["prompt"] == "cat" and json.loads(text["placement"]) == {"nodes": ["a"]}
    with pytest.raises(ValueError):
        store.put("../escape.png", png)


def test_worker_catalog_accepts_sd3_medium_and_keeps_shared_validation() -> None:
    catalog = parse_catalog(
        "models:\n"
        "  - {name: re-sd3, source: /m/sd3, pipeline: sd3-medium, vramGb: 16}\n"
        "  - {name: sd15, source: /m/sd15, pipeline: sd15, vramGb: 4}\n"
    )
    assert [(e.name, e.pipeline) for e in catalog] == [("re-sd3", "sd3-medium"), ("sd15", "sd15")]
    with pytest.raises(CatalogError):
        parse_catalog("models:\n  - {name: Bad_Name, source: x, pipeline: sd3-medium, vramGb: 1}\n")


def test_worker_run_refuses_a_missing_api_or_a_broken_catalog_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    from aigc_policy.cli import main

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert main(["worker", "run", "--node", "n1"]) == 2
    assert "no Kubernetes API to talk to (not in a cluster: give --kubeconfig)" in capsys.readouterr().err
    kubeconfig = tmp_path / "kubeconfig"  # valid, never contacted: the catalog is read first
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("models:\n  - name: [\n")
    args = ["worker", "run", "--node", "n1", "--kubeconfig", str(kubeconfig), "--metrics-port", "0"]
    assert main([*args, "--catalog", str(catalog)]) == 2
    err = capsys.readouterr().err
    assert f"--catalog: {catalog}: invalid YAML at line 3, column 1" in err and err.count("\n") == 1
    assert main([*args, "--simulate", str(catalog), "--gpu-class", "a100"]) == 2
    assert f"--simulate: {catalog}: invalid YAML at line 3, column 1" in capsys.readouterr().err


class StandInCoreV1:
    """Stand-in for kubernetes.client.CoreV1Api (no cluster in unit tests): serves `config_maps`."""

    config_maps: dict[tuple[str, str], dict[str, str]] = {}

    def __init__(self, api_client: object) -> None:
        pass

    def read_namespaced_config_map(self, name: str, namespace: str):
        from types import SimpleNamespace

        from kubernetes.client.exceptions import ApiException

        if (namespace, name) not in self.config_maps:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=self.config_maps[(namespace, name)])


def test_configmap_catalog_errors_name_the_configmap_and_what_is_wrong(monkeypatch) -> None:
    from aigc_worker.catalog import load_configmap_catalog
    from kubernetes import client

    monkeypatch.setattr(client, "CoreV1Api", StandInCoreV1)
    good = "models:\n  - {name: a, source: s, pipeline: sd15, vramGb: 1}\n"
    StandInCoreV1.config_maps = {("ns", "ok"): {"catalog.yaml": good}, ("ns", "nokey"): {"other": good},
                                 ("ns", "bad"): {"catalog.yaml": "models: [\n"}}
    assert "a" in load_configmap_catalog(None, "ns", "ok")
    for name, reason in [("missing", "cannot be read (404 Not Found)"), ("nokey", "no catalog.yaml key"),
                         ("bad", "invalid YAML at line 2, column 1")]:
        with pytest.raises(CatalogError, match=rf"^ConfigMap ns/{name}: .*{re.escape(reason)}"):
            load_configmap_catalog(None, "ns", name)


def test_importing_the_pipelines_prints_no_torchvision_fallback_warning() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import aigc_worker.pipelines"], capture_output=True, text=True)
    assert done.returncode == 0 and "torchvision" not in done.stderr, done.stderr


def test_gloo_peer_loss_is_recognised() -> None:
    assert is_collective_failure(RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer"))
    assert not is_collective_failure(ValueError("Connection closed"))


def test_simulated_execution_sleeps_the_scenario_service_time(tmp_path) -> None:
    from aigc_api.spec import GenerationRequest
    from aigc_policy.scenario import load_scenario
    from aigc_worker.execution import RankRun
    from aigc_worker.metrics import WorkerMetrics
    from aigc_worker.simulate import SimulatedExecutor

    perf = load_scenario("edge-hetero").perf
    slept: list[float] = []
    executor = SimulatedExecutor(perf, "a100", DirectoryStore(tmp_path), WorkerMetrics(), sleep=slept.append)
    request = GenerationRequest("sd15", "a cat", "", 512, 512, None, 1)
    run = RankRun("ns", "t", "uid", 1, 0, ("edge-0",), 20, request)
    assert executor.run(run).succeeded and executor.run(run).succeeded  # cold, then warm
    step = perf.step_seconds("a100", "sd15", 512, 512, 1)
    assert slept == pytest.approx([perf.load_seconds("a100", "sd15", 1), 20 * step, 20 * step])
    unknown = RankRun(
        "ns", "u", "uid", 1, 0, ("edge-0",), 20, GenerationRequest("nope", "x", "", 512, 512, None, 1)
    )
    assert executor.run(unknown).reason == "UnknownModel"
