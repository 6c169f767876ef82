from collections import Counter

import pytest
from aigc_policy.scenario import ScenarioError, load_scenario, packaged_names


def test_packaged_scenarios_load():
    assert {"eat-reference", "ladts-reference", "edge-hetero"} <= set(packaged_names())
    edge = load_scenario("edge-hetero")
    assert Counter(n.gpu_class for n in edge.nodes) == {"a100": 2, "l4": 2, "jetson-orin": 4}
    assert set(edge.models) == {"sd-turbo", "sd15", "sdxl"}
    assert not edge.perf.supports("jetson-orin", "sdxl", 1024, 1024, 1)
    assert edge.perf.supports("a100", "sdxl", 1024, 1024, 1)


@pytest.mark.parametrize(("count", "expected"), [(16, (4, 4, 8)), (2, (1, 0, 1)), (64, (16, 16, 32)), (5, (1, 1, 3))])
def test_nodes_scale_keeping_proportions(count, expected):
    nodes = load_scenario("edge-hetero", nodes=count).nodes
    counts = Counter(n.gpu_class for n in nodes)
    assert len(nodes) == count
    assert (counts["a100"], counts["l4"], counts["jetson-orin"]) == expected
    assert len({n.name for n in nodes}) == count


def test_bad_inputs(tmp_path):
    with pytest.raises(ScenarioError, match="2..64"):
        load_scenario("edge-hetero", nodes=65)
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no-such")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nreuse: per-node\nwidgets: 3\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: unknown key\(s\) widgets"):
        load_scenario(str(bad))


def test_unlisted_resolution_scales_with_pixels():
    perf = load_scenario("edge-hetero").perf
    assert perf.step_seconds("a100", "sd15", 640, 640, 1) == pytest.approx(0.046 * 640 * 640 / (512 * 512))
