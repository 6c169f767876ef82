import pytest
from aigc_policy import policies
from aigc_policy.scheduler import Scheduler

REQUIRED = ["random", "round-robin", "least-loaded", "eft", "eat-greedy", "eat-greedy-ref",
            "capacity-random", "opt-ts", "spt", "warm-first", "rollout", "lower-bound"]


@pytest.mark.parametrize("name", REQUIRED)
def test_baselines_are_registered_schedulers(name):
    policy = policies.make(name)
    assert isinstance(policy, Scheduler) and policy.name == name


def test_unknown_policy():
    with pytest.raises(policies.UnknownPolicy, match="unknown policy 'nope'"):
        policies.make("nope")


def test_argument_after_colon_reaches_the_factory():
    class WithPath:
        name = "eat"

        def __init__(self, path=None):
            self.path = path

        def reset(self, seed):
            return None

        def decide(self, snap):
            return None

    policies.register("test-eat", WithPath)
    assert policies.make("test-eat:/tmp/model.onnx").path == "/tmp/model.onnx"
    assert policies.make("test-eat").path is None
