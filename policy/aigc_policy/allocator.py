"""Keep freed heap memory in the process instead of handing it back to the kernel (glibc).

A decision at 64 nodes x 32 tasks allocates arrays of 60-400 KB (the pair features are 393 KB).
Under glibc's defaults such blocks are often mmap'ed fresh or trimmed off the heap when freed,
so the next decision touches new pages: 130-180 minor page faults per encode, half of the
encoder's time (tests/unit/test_allocator.py counts them). Raising both thresholds once per
process keeps those pages mapped and reused; the cost is up to TRIM_THRESHOLD_BYTES of freed
memory that the process does not return.
"""

from __future__ import annotations

import ctypes

MMAP_THRESHOLD_BYTES = 4 << 20  # blocks below this come from the heap, not fresh mappings
TRIM_THRESHOLD_BYTES = 64 << 20  # free heap top kept before glibc gives it back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def retain_freed_memory() -> bool:
    """Set both thresholds; True when the C library accepted them, False where it has no glibc
    mallopt (musl, macOS), in which case nothing changed."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
