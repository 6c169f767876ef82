import pytest
from aigc_policy.quality import EatLogCurve, EatReferenceCurve, make_curve

# eat-spec §3.5 table
EAT_TABLE = {5: 0.1237, 8: 0.1657, 10: 0.1856, 15: 0.2218, 20: 0.2475, 25: 0.2674, 30: 0.2837}


@pytest.mark.parametrize(("steps", "expected"), sorted(EAT_TABLE.items()))
def test_eat_reference_curve_matches_spec_table(steps, expected):
    assert EatReferenceCurve()(steps) == pytest.approx(expected, abs=5e-5)


def test_eat_reference_curve_edges():
    curve = EatReferenceCurve()
    assert curve(4) == 0.0
    assert curve(31) == 0.27 and curve(100) == 0.27
    assert EatReferenceCurve(above_peak=0.25)(32) == 0.25


def test_eat_log_is_rescaled_to_one_at_its_peak_and_monotone():
    curve = EatLogCurve(peak_steps=40)
    assert curve(40) == pytest.approx(1.0)
    assert curve(50) == 1.0
    values = [curve(s) for s in range(1, 60)]
    assert values == sorted(values)
    assert curve(20) == pytest.approx(EAT_TABLE[15] / EAT_TABLE[30], abs=1e-3)


def test_table_curve_interpolates():
    curve = make_curve({"kind": "table", "points": {1: 0.8, 2: 0.9, 4: 1.0}})
    assert curve(1) == pytest.approx(0.8)
    assert curve(3) == pytest.approx(0.95)
    assert curve(9) == 1.0


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown quality kind"):
        make_curve({"kind": "clip"})
