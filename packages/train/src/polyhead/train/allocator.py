"""glibc malloc settings for CPU training.

PyTorch's CPU tensors come from the C allocator. glibc serves blocks above its mmap threshold (128 KiB at
first, raised on the fly up to 32 MiB) with fresh ``mmap`` calls and returns freed heap tops above its
trim threshold to the kernel, so the large activations of every training step are page-faulted in again
on every step (the page faults and step times measured on AutoInt: packages/train/README.md, "CPU memory
allocator").

:func:`tune_cpu_allocator` sets both thresholds once per process (``mallopt``): blocks up to 32 MiB come
from the heap and up to 128 MiB of freed heap is kept for reuse. Peak memory is unchanged; memory freed
after the peak is returned later. ``POLYHEAD_MALLOC_TUNING=0`` turns it off; other C libraries are left
alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 128 * 2**20


@functools.cache
def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if they were set."""
    if os.environ.get("POLYHEAD_MALLOC_TUNING", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
