"""``allocator.keep_freed_memory``: freed large blocks are reused, not re-mapped and re-zeroed.

Each case runs in a fresh process (the setting lasts for the process's life)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Five rounds of: malloc 64 MB, touch every page, free; prints the page faults of each round.
ROUNDS = """
import ctypes, resource, sys
from gkd_search.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def round_faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, *[round_faults() for _ in range(5)])
"""
PAGES = (64 << 20) // 4096


def _rounds(mode: str) -> tuple[str, list[int]]:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], check=True, capture_output=True, text=True)
    applied, *faults = out.stdout.split()
    return applied, [int(f) for f in faults]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_large_blocks_are_reused_without_new_page_faults():
    _, default = _rounds("default")
    applied, kept = _rounds("keep")
    assert applied == "True"
    assert all(f > PAGES // 2 for f in default)  # glibc maps every block afresh: the kernel faults it in again
    assert kept[0] > PAGES // 2  # the first block is new memory either way
    assert all(f < PAGES // 50 for f in kept[1:])  # then the heap keeps it: touching it again costs no faults
