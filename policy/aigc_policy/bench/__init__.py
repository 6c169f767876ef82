"""`aigc-edge bench`: compare schedulers on identical simulated workloads."""
