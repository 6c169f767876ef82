"""Settings for every test lane, applied before any test module imports torch."""

import os

# One torch (OpenMP) thread per test process and per process it starts, as `aigc-edge train` and
# the demo's workers run: with a thread per core, OpenMP's spinning workers slow a short training
# test from 3 s to over 180 s as soon as anything else (an e2e worker, another build) takes a core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
