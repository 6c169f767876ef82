"""Recorded snapshots replay to the stored encoder output (tests/fixtures/snapshots/record.py).

The operator builds its tensors with the same Encoder from a live cluster; these fixtures pin
the numbers, so any change to the encoder must be deliberate (re-record, bump the schema).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from aigc_policy.features import FEATURE_SCHEMA_VERSION, Encoder
from aigc_policy.snapshot_io import load_snapshot, snapshot_from_dict, snapshot_to_dict

FIXTURES = Path(__file__).parents[1] / "fixtures" / "snapshots"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))
RECORDED_SCHEMA = 1


def test_fixtures_exist_and_match_the_schema_version():
    assert len(CASES) >= 4
    assert FEATURE_SCHEMA_VERSION == RECORDED_SCHEMA, "re-record the fixtures after changing the encoder"


@pytest.mark.parametrize("case", CASES)
def test_replayed_snapshot_encodes_to_the_stored_arrays(case):
    encoded = Encoder().encode(load_snapshot(FIXTURES / f"{case}.json")).as_dict()
    stored = np.load(FIXTURES / f"{case}.npz")
    assert sorted(stored.files) == sorted(encoded)
    for name in stored.files:
        assert encoded[name].shape == stored[name].shape, name
        assert encoded[name].dtype == stored[name].dtype, name
        np.testing.assert_allclose(encoded[name], stored[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_serialisation_round_trips(case):
    raw = json.loads((FIXTURES / f"{case}.json").read_text())
    again = snapshot_to_dict(snapshot_from_dict(raw))
    assert json.loads(json.dumps(again)) == raw


def test_unknown_format_is_refused():
    raw = json.loads((FIXTURES / f"{CASES[0]}.json").read_text())
    with pytest.raises(ValueError, match="unsupported snapshot format"):
        snapshot_from_dict({**raw, "format": 99})
