"""CPU training runtime: why a default-size model trained slowly on a 2-core CPU, and the fix.

Measured on the 2-core machine (default dims, T = 60, batch 64, ``/usr/bin/time -v``):

* **Spinning OpenMP threads.**  torch's intra-op pool (libgomp) busy-waits between parallel
  regions, and the mambapy scan runs thousands of small ops per step: with 2 threads on 2
  shared cores the spinning took half the CPU (user 36 s for a 17-s run).  With
  ``OMP_WAIT_POLICY=PASSIVE`` the idle threads sleep: user time halved, 3-4 -> 8 QA/s.  libgomp
  reads the variable when torch loads, so ``cli.py train`` and ``eval`` set it (unless it is
  set) before importing torch.
* **Page faults.**  glibc hands blocks above its mmap threshold (the scan's [B, T, d_inner,
  d_state] tensors are ~100 MB) back to the kernel on free, so every step faulted them in
  again as zeroed pages: 6.9 M minor faults and system time about equal to user time.  With
  :func:`keep_freed_memory` (no mmap for large blocks, no trimming of the heap) the run had
  1.3 M faults and system time fell from 12 to 5 s.  The process keeps its peak memory, which a
  training step reaches every step anyway.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

#: glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def cpu_runtime_note(kept: bool) -> str:
    """The train.log line saying how the CPU runtime is set."""
    return (f"CPU runtime: OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
            f"{torch.get_num_threads()} torch thread(s), freed memory "
            f"{'kept in the process' if kept else 'returned to the OS (default malloc)'}")


def keep_freed_memory() -> bool:
    """Large blocks come from the heap and freed memory stays in the process (glibc only);
    True when applied."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):   # not glibc (musl, macOS): nothing to tune
        return False
