"""Keep freed memory in a trial worker: glibc's ``malloc`` without ``mmap`` for large blocks.

glibc serves an allocation above its ``mmap`` threshold (128 KB, rising to at most 32 MB) with a
fresh ``mmap`` and gives it back to the kernel with ``munmap`` when freed. A full-batch training
step on a large graph allocates and frees the same large tensors every step (messages,
activations, gradients), so each step maps fresh pages and the kernel zeroes every one of them:
at ogbn-arxiv size a GCN-2x64 step page-faulted 678,000 pages (2.7 GB zeroed) per step.
:func:`keep_freed_memory` sets ``M_MMAP_MAX = 0`` (every block comes from the heap) and a high
``M_TRIM_THRESHOLD`` (freed memory stays in the heap), the runtime equivalent of starting the
process with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``.

Measured (``bench/propagation.py``, one thread, CSR propagation, the step's median, this call
against glibc's defaults): at ogbn-arxiv's size (169,343 nodes, 1.17 M edges) the step is 2.4x
(GCN-2x64), 2.0x (GraphSAGE-2x64) and 2.2x (GCNII-4x64) faster; at half that size 0.92-1.24x, at
a quarter 1.0-1.36x. The cost: a worker's resident memory stays at its high-water mark, which a
trial reaches anyway at its first step. Every trial worker calls
it (:func:`gkd_search.ray_backend.trainable`); the driver, which lives for the whole search, does
not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: ``mallopt`` parameters, from glibc's ``malloc.h``
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: the largest ``int`` ``mallopt`` takes: free memory at the top of the heap is returned to the
#: kernel only beyond 2 GiB
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make this process's ``malloc`` keep freed memory (see the module docstring); True when
    set, False where the C library is not glibc (the call is then a no-op)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only (musl has neither)
    except (OSError, AttributeError):
        return False
    del gnu_get_libc_version
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
