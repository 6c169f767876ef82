import json

import pytest
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import TraceError, TraceWorkload

GOOD = {"arrival_s": 0.5, "model": "sd15", "width": 512, "height": 768, "steps": None, "min_steps": 10,
        "max_steps": 30, "deadline_s": 20.0, "min_quality": 0.8, "gang_sizes": [1, 2], "priority": 1, "id": "a"}


def write(tmp_path, rows):
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def replay(path):
    return list(TraceWorkload(path, load_scenario("edge-hetero")).tasks(0))


def test_good_trace(tmp_path):
    minimal = {"arrival_s": 1, "model": "sdxl", "width": 1024, "height": 1024}
    tasks = replay(write(tmp_path, [GOOD, minimal]))
    assert tasks[0].id == "a" and (tasks[0].min_steps, tasks[0].max_steps) == (10, 30)
    assert tasks[0].gang_sizes == (1, 2) and tasks[0].priority == 1
    assert tasks[1].id == "line2" and (tasks[1].min_steps, tasks[1].max_steps) == (20, 50)
    assert tasks[1].deadline_s is None and tasks[1].priority == 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "malformed JSON"),
        ({**GOOD, "colour": "red"}, "unknown field"),
        ({**GOOD, "model": "dalle"}, "unknown model"),
        ({**GOOD, "arrival_s": -1}, "arrival_s must be >= 0"),
        ({**GOOD, "width": 500}, "multiple of 8"),
        ({**GOOD, "deadline_s": 0}, "deadline_s must be > 0"),
        ({**GOOD, "min_quality": 1.5}, "min_quality"),
        ({**GOOD, "gang_sizes": [3]}, "gang_sizes"),
        ({**GOOD, "steps": 2.5}, "steps must be an integer"),
        ({**GOOD, "arrival_s": 0.1}, "goes back in time"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad, message):
    path = write(tmp_path, [GOOD, bad])
    with pytest.raises(TraceError, match=message) as err:
        replay(path)
    assert str(err.value).startswith(f"{path}:2: ")
