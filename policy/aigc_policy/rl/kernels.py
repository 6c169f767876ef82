"""CPU kernels chosen so that training gives the same weights on any x86-64 CPU with AVX2.

torch picks its vectorised kernels (ATen) and MKL its matrix-multiply code for the CPU it runs on,
and each choice adds floating-point numbers in its own order: a few hundred updates later, two
CPU types hold different policies from one seed and one command. `aigc-edge train` therefore
pins ATen to its AVX2 kernels and MKL to its conditional-numerical-reproducibility branch for
"Intel or compatible" CPUs (MKL_CBWR=COMPATIBLE,STRICT). MKL's AVX2 and AVX-512 branches would
be faster but hold only on Intel CPUs: elsewhere MKL falls back to its AUTO branch (on an AMD EPYC
all three give the same weights, COMPATIBLE others). `--native-kernels` lets both libraries
choose for the CPU again.

ATen reads its setting once, at the first kernel torch runs in the process, so `pin` must come
before any tensor is made; when it comes too late it says so rather than claim a portable run.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)

PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT"}


def pin() -> str:
    """Pin ATen and MKL to the portable kernels; returns what is in use (`describe`)."""
    os.environ.update(PORTABLE)
    in_use = describe()
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        in_use += " (not portable: torch ran a kernel before the pin)"
        log.warning("cpu kernels %s", in_use)
    return in_use


def describe() -> str:
    """The ATen capability torch dispatches to and MKL's reproducibility branch, e.g. 'aten=AVX2 mkl=COMPATIBLE,STRICT'."""
    return f"aten={torch.backends.cpu.get_cpu_capability()} mkl={os.environ.get('MKL_CBWR', 'auto')}"
