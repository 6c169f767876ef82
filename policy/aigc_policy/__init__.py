"""Policy side of aigc-edge-scheduler: cluster snapshot, feature encoder, simulator, baselines, bench."""

__version__ = "0.1.0"
