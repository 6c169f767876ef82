"""Heuristic schedulers: the reference rows every learned policy is compared against."""
