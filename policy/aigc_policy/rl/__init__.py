"""Learned schedulers (torch): EAT and its ablations, trained with discrete SAC from a BC warm start."""
