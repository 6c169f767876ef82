"""The operator's Prometheus parsing (aigc_operator.gpu_metrics) against crafted answers: NaN and
infinite values, missing labels, huge values, wrong types and shapes. It must never raise, never
call a node fresh on a value that is not a number, and keep the good series of a bad answer."""

from __future__ import annotations

import math
from typing import Any

import pytest
from aigc_operator.gpu_metrics import QUERIES, MetricsReading, PrometheusSampler
from aigc_operator.view import metrics_health

TTL_S = 30.0


def _sampler(answers: dict[str, Any]) -> PrometheusSampler:
    """A sampler whose client answers each query (by column name) with a crafted result."""
    sampler = PrometheusSampler("http://127.0.0.1:9", 0.1)
    by_query = {query: answers.get(name, []) for name, query in QUERIES.items()}

    def custom_query(query: str) -> Any:
        answer = by_query[query]
        if isinstance(answer, Exception):
            raise answer
        return answer

    sampler._client.custom_query = custom_query  # type: ignore[method-assign]
    return sampler


def _series(node: str | None, value: Any, label: str = "node") -> dict[str, Any]:
    metric = {} if node is None else {label: node}
    return {"metric": metric, "value": [1_700_000_000.0, value]}


def _fresh(reading: MetricsReading, node: str) -> bool:
    health = metrics_health([node], reading, True, TTL_S, reading.taken_at)
    return node not in health.stale_nodes


def test_sane_answer() -> None:
    reading = _sampler({"age_s": [_series("edge-0", "1.5")], "util_pct": [_series("edge-0", "40")]}).sample()
    assert reading.up and reading.nodes["edge-0"].age_s == 1.5
    assert reading.nodes["edge-0"].util_pct == 40.0 and _fresh(reading, "edge-0")


@pytest.mark.parametrize("bad", ["NaN", "nan", "+Inf", "-Inf"])
def test_non_finite_age_is_not_fresh(bad: str) -> None:
    reading = _sampler({"age_s": [_series("edge-0", bad), _series("edge-1", "2")]}).sample()
    assert reading.up
    assert not _fresh(reading, "edge-0")  # NaN used to become max(0, nan) == 0: "fresh"
    assert _fresh(reading, "edge-1")


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-Inf", "1.7e308", "-1.7e308"])
def test_non_finite_or_huge_gauges_do_not_break_the_node(bad: str) -> None:
    reading = _sampler(
        {
            "age_s": [_series("edge-0", "1")],
            "util_pct": [_series("edge-0", bad)],
            "fb_free_mib": [_series("edge-0", bad)],
        }
    ).sample()
    sample = reading.nodes["edge-0"]
    assert reading.up and _fresh(reading, "edge-0")
    for value in (sample.util_pct, sample.fb_free_mib):
        assert value is None or math.isfinite(value)


def test_huge_age_is_stale_not_an_error() -> None:
    reading = _sampler({"age_s": [_series("edge-0", "1.7e308")]}).sample()
    assert reading.up and not _fresh(reading, "edge-0")


def test_negative_age_clamps_to_zero() -> None:  # exporter clock ahead of Prometheus
    reading = _sampler({"age_s": [_series("edge-0", "-5")]}).sample()
    assert reading.nodes["edge-0"].age_s == 0.0


@pytest.mark.parametrize(
    "series",
    [
        _series(None, "1"),  # no labels at all
        _series("edge-0", "1", label="Hostname"),  # label not copied to `node`
        {"metric": {"node": ""}, "value": [0, "1"]},
        {"metric": {"node": "edge-0"}},  # no value
        {"metric": {"node": "edge-0"}, "value": []},
        {"metric": {"node": "edge-0"}, "value": [0, "twelve"]},  # wrong type
        {"metric": {"node": "edge-0"}, "value": [0, None]},
        {"metric": {"node": "edge-0"}, "value": [0, {"x": 1}]},
        {"metric": {"node": 7}, "value": [0, "1"]},
        {"metric": None, "value": [0, "1"]},
        "not a series",
        None,
        42,
    ],
)
def test_malformed_series_are_skipped_and_the_rest_kept(series: Any) -> None:
    reading = _sampler({"age_s": [series, _series("edge-1", "1")]}).sample()
    assert reading.up, reading.error
    assert _fresh(reading, "edge-1")
    assert (
        "edge-0" not in reading.nodes or not _fresh(reading, "edge-0") or reading.nodes["edge-0"].age_s >= 0
    )


@pytest.mark.parametrize(
    "answer",
    [
        ConnectionRefusedError("refused"),
        TimeoutError("slow"),
        ValueError("Expecting value: line 1 column 1"),
        {"resultType": "matrix"},  # a dict where a list is expected
        "garbage",
        None,
    ],
)
def test_failed_or_unusable_answer_means_down_never_raises(answer: Any) -> None:
    reading = _sampler({"age_s": answer}).sample()
    if not reading.up:
        assert reading.error
        health = metrics_health(["edge-0"], reading, True, TTL_S, reading.taken_at)
        assert not health.source_up and health.stale_nodes == {"edge-0"}
    else:
        assert reading.nodes == {}


def test_duplicate_nodes_keep_one_value() -> None:
    reading = _sampler({"age_s": [_series("edge-0", "1"), _series("edge-0", "50")]}).sample()
    assert reading.up and reading.nodes["edge-0"].age_s in (1.0, 50.0)
