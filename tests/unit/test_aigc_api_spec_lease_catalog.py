"""Spec parsing, the worker Lease format and the model catalog loader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aigc_api.catalog import CatalogError, load_catalog, parse_catalog
from aigc_api.lease import WorkerStatus, from_lease_body, lease_name, to_lease_body
from aigc_api.spec import SpecError, parse_generation_request, parse_guidance_milli, parse_task_spec
from aigc_policy.snapshot import Resident

REPO = Path(__file__).resolve().parents[2]


def body(**spec: object) -> dict:
    base = {"model": "sd-turbo", "prompt": "a cat", "steps": 4}
    base.update(spec)
    return {
        "metadata": {"name": "t", "namespace": "ns", "creationTimestamp": "2026-01-02T03:04:05Z"},
        "spec": base,
    }


def test_task_spec_mapping() -> None:
    raw = body(
        width=768, qos={"deadlineSeconds": 20, "minQualityMilli": 650, "priority": 5}, gangSizes=[4, 1]
    )
    del raw["spec"]["steps"]
    raw["spec"].update(minSteps=10, maxSteps=30)
    spec = parse_task_spec(raw)
    assert spec.id == "ns/t" and spec.model == "sd-turbo"
    assert (spec.width, spec.height, spec.min_steps, spec.max_steps) == (768, 512, 10, 30)
    assert spec.deadline_s == 20.0 and spec.min_quality == 0.65 and spec.priority == 5
    assert spec.gang_sizes == (1, 4)
    assert spec.arrival_s == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    fixed = parse_task_spec(body())
    assert fixed.steps_fixed and fixed.gang_sizes is None and fixed.deadline_s is None


def test_spec_errors_name_the_field() -> None:
    raw = body()
    del raw["spec"]["steps"]
    with pytest.raises(SpecError, match="either steps"):
        parse_task_spec(raw)
    raw["spec"].update(minSteps=9, maxSteps=3)
    with pytest.raises(SpecError) as info:
        parse_task_spec(raw)
    assert info.value.field == "spec.minSteps"


@pytest.mark.parametrize(
    ("value", "milli"), [(7, 7000), ("7.5", 7500), ("0.125", 125), (None, None), ("30", 30000)]
)
def test_guidance(value: object, milli: int | None) -> None:
    assert parse_guidance_milli(value) == milli


@pytest.mark.parametrize("value", ["31", "7.5555", "abc", True, "-1", "nan"])
def test_bad_guidance(value: object) -> None:
    with pytest.raises(SpecError):
        parse_guidance_milli(value)


def test_generation_request() -> None:
    req = parse_generation_request(body(guidance="7.5", seed=42, negativePrompt="blurry"))
    assert req.guidance_scale == 7.5 and req.seed == 42 and req.negative_prompt == "blurry"


def test_lease_round_trip() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    status = WorkerStatus(
        node="edge-1",
        holder="aigc-worker-abcde",
        address="10.0.0.2:9400",
        renew_time=now,
        lease_seconds=20,
        resident=(Resident("sd-turbo", ("edge-1",)), Resident("sdxl", ("edge-0", "edge-1"))),
        free_at=now + timedelta(seconds=3),
        queue_length=2,
    )
    lease = to_lease_body(status, "aigc-system")
    assert lease["metadata"]["name"] == lease_name("edge-1") == "aigc-worker-edge-1"
    assert lease["spec"]["renewTime"] == "2026-01-02T03:04:05.123456Z"
    parsed = from_lease_body(lease)
    assert parsed is not None
    assert parsed.resident == status.resident and parsed.queue_length == 2 and parsed.lease_seconds == 20
    assert parsed.free_at == now.replace(microsecond=123000) + timedelta(seconds=3)
    assert parsed.alive(now + timedelta(seconds=19)) and not parsed.alive(now + timedelta(seconds=21))


def test_foreign_and_garbled_leases() -> None:
    assert from_lease_body({"metadata": {"name": "kube-scheduler"}, "spec": {}}) is None
    garbled = {
        "metadata": {
            "name": "aigc-worker-edge-3",
            "annotations": {"aigc.edge.io/resident-models": "{not json"},
        },
        "spec": {"renewTime": "2026-01-02T03:04:05.000000Z"},
    }
    parsed = from_lease_body(garbled)
    assert parsed is not None and parsed.node == "edge-3" and parsed.resident == ()


def test_catalog() -> None:
    catalog = load_catalog(REPO / "manifests" / "model-catalog.yaml")
    assert "sd-turbo" in catalog and len(catalog) >= 3
    entry = catalog.get("sd-turbo")
    assert entry is not None and entry.vram_gb > 0
    with pytest.raises(CatalogError, match=r"models\[0\].vramGb"):
        parse_catalog("models: [{name: a, source: s, pipeline: sd15, vramGb: 0}]")
    with pytest.raises(CatalogError, match="duplicate"):
        parse_catalog(
            "models: [{name: a, source: s, pipeline: sd15, vramGb: 1}, {name: a, source: s, pipeline: sd15, vramGb: 1}]"
        )
    with pytest.raises(CatalogError, match="pipeline"):
        parse_catalog("models: [{name: a, source: s, pipeline: nope, vramGb: 1}]")
    with pytest.raises(CatalogError, match=r"^invalid YAML at line 2, column 12: mapping values"):
        parse_catalog("models:\n  - name: x: y\n")
