"""Decode worker processes: light and single-threaded.

* Light: this module and what a decode task imports (``extract.decode``, ``extract.logmel``:
  numpy, decord, PyAV) never import torch or open_clip, so a spawned worker is ready in a fraction
  of a second.  (Spawn also re-runs the top level of the main script in each worker: ``cli.py``
  keeps its top level to ``typer``.)
* Single-threaded: each worker is one decode stream, so its libraries must not start thread pools
  of their own (N workers x N BLAS/OpenMP threads oversubscribe the cores).  The thread variables
  below are set to 1 in the environment the workers are spawned with *and* by the worker
  initializer; decord's ``VideoReader`` gets ``num_threads=1``; if torch was imported by the main
  script, the initializer sets ``torch.set_num_threads(1)``.
* ``default_workers()``: one decode worker per usable core (``os.sched_getaffinity``).
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

#: thread-pool sizes of the numeric libraries a worker may load
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cores() -> int:
    """CPU cores this process may run on (affinity / cgroup cpuset aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Decode worker processes when ``workers`` is not given: one per usable core."""
    return usable_cores()


@contextmanager
def single_threaded_env() -> Iterator[None]:
    """Within the block, the thread variables are 1 (processes spawned here inherit that)."""
    old = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def init_worker(nice: int = 0) -> None:
    """ProcessPoolExecutor initializer: one thread per library in this process; ``nice`` > 0
    lowers the worker's CPU priority (the encoders in the main process come first)."""
    os.environ.update({k: "1" for k in THREAD_VARS})
    if nice > 0:
        try:
            os.nice(int(nice))
        except (AttributeError, OSError):
            pass
    torch = sys.modules.get("torch")      # only if the main script imported it
    if torch is not None:
        try:
            torch.set_num_threads(1)
        except Exception:
            pass


def safe_decode(path: str, spec: Any) -> Any:
    """:func:`extract.decode.decode_video`, with any failure turned into its message (a
    ``DecodedVideo`` or a ``str``)."""
    from .decode import DecodeError, decode_video

    try:
        return decode_video(path, spec)
    except DecodeError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must not stop the run; record it
        return f"{path}: {type(exc).__name__}: {exc}"


def worker_facts() -> dict:
    """What a worker process looks like from inside (for tests and the benchmark)."""
    return {"pid": os.getpid(), "threads": {k: os.environ.get(k) for k in THREAD_VARS},
            "torch_imported": "torch" in sys.modules, "open_clip_imported": "open_clip" in sys.modules,
            "nice": os.nice(0) if hasattr(os, "nice") else None}


def warm_up() -> int:
    """An empty task that loads the decode modules (used to time worker start-up)."""
    from . import decode, logmel  # noqa: F401
    import decord  # noqa: F401

    return os.getpid()


__all__ = ["default_workers", "usable_cores", "init_worker", "safe_decode", "single_threaded_env",
           "THREAD_VARS", "warm_up", "worker_facts"]
