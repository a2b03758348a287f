"""The CPU cores this process may use (decode workers, synth workers, thread pools)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on (affinity / cgroup cpuset aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
