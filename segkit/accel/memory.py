"""Keeping freed memory in the process's heap: the scoring workers of ``segkit eval`` call it.

glibc serves a block above its mmap threshold (128 KB to start, raised as such blocks are freed, 32 MB at most)
with a fresh mapping and returns heap memory above its trim threshold to the system, so temporaries of a few
hundred KB made and dropped for every image are mapped, zero-filled page by page by the kernel and unmapped again.
Raising both thresholds keeps the pages: scoring 1,000 saved maps took 0.2 instead of 1.8 s of system time. The
cost: memory a process freed stays with it until it ends (its peak use is unchanged).

Tried for ``segkit predict`` too (benchmarks/RESULTS.md, "Engines"): in a fresh process DeepLabv3+'s fp32 forward
pass ran 382-385 instead of 423-544 ms, but whole ``segkit predict`` runs over 24 images measured the same with and
without (17.5-18.9 s against 18.1-18.2 s, within this 2-core machine's noise), so predict leaves the allocator as
it is. ``SEGKIT_KEEP_FREED_MEMORY=0`` turns it off here too.
"""

from __future__ import annotations

import ctypes
import functools
import os

ENV = "SEGKIT_KEEP_FREED_MEMORY"

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 256 * 1024 * 1024
TRIM_THRESHOLD = 512 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); False where the C library is not glibc
    or ``SEGKIT_KEEP_FREED_MEMORY=0``."""
    if os.environ.get(ENV) == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False  # not glibc (macOS, Windows, musl): its allocator as it is
