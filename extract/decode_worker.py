"""Decode worker processes: light and single-threaded.

* Light: this module and what a decode task imports (``extract.decode``, the audio-encoder
  registry ``extract.audio`` and the encoder's front end, e.g. ``extract.logmel``: numpy, decord,
  PyAV) never import torch or open_clip, so a spawned worker is ready in a fraction
  of a second.  (Spawn also re-runs the top level of the main script in each worker: ``cli.py``
  keeps its top level to ``typer`` and :mod:`extract.config`, which loads no numpy, h5py or
  store; ``tests/test_startup.py`` checks a spawned worker.)
* Single-threaded: each worker is one decode stream, so its libraries must not start thread pools
  of their own (N workers x N BLAS/OpenMP threads oversubscribe the cores).  The thread variables
  below are set to 1 in the environment the workers are spawned with *and* by the worker
  initializer; decord's ``VideoReader`` gets ``num_threads=1``; if torch was imported by the main
  script, the initializer sets ``torch.set_num_threads(1)``.
* ``default_workers()``: one decode worker per usable core (``os.sched_getaffinity``).
* Hand-off through files (:func:`decode_to_file`): a worker writes the decoded arrays (~10 MB a
  video) to a file in a RAM-backed folder and returns a small :class:`Handoff`.  Pickled
  through the pool's pipe, the arrays need the main process's GIL for every 64 KB chunk; while
  the main thread imports torch and builds the encoders, that starved the workers (measured:
  16 cores 25 % busy for the first 12 s of a run).  Why and figures: docs/EXTRACTION.md.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from common.cores import usable_cores

from .decode import DecodedVideo

#: thread-pool sizes of the numeric libraries a worker may load
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def default_workers() -> int:
    """Decode worker processes when ``workers`` is not given: one per usable core."""
    return usable_cores()


@contextmanager
def single_threaded_env() -> Iterator[None]:
    """Within the block, the thread variables are 1 and SIGINT is blocked in this thread;
    processes spawned here inherit both, and keep SIGINT blocked until :func:`init_worker`
    ignores it (Ctrl-C reaches the whole process group: the main process alone handles it)."""
    old = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def init_worker(nice: int = 0) -> None:
    """ProcessPoolExecutor initializer: one thread per library in this process; ``nice`` > 0
    lowers the worker's CPU priority (the encoders in the main process come first).  SIGINT is
    ignored: the main process handles Ctrl-C and shuts the workers down."""
    os.environ.update({k: "1" for k in THREAD_VARS})
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
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


@dataclass(frozen=True)
class Handoff:
    """A decoded video left in ``file`` by a worker: frames (uint8) then audio (float32), raw."""

    file: str
    path: str
    frames_shape: tuple[int, ...]
    audio_shape: tuple[int, ...]
    audio_present: bool
    n_segments: int
    duration: float


def handoff_folder(need_bytes: int) -> str:
    """A new private folder for hand-off files: in /dev/shm (RAM) when it has room for
    ``need_bytes``, else in the temp folder (the page cache keeps it in RAM as long as it can)."""
    shm = Path("/dev/shm")
    root = None
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * need_bytes:
            root = str(shm)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="shmamba-decode-", dir=root)


def write_handoff(d: DecodedVideo, folder: str) -> Handoff:
    """Write ``d``'s arrays into a new file in ``folder`` (removed again if writing fails)."""
    fd, name = tempfile.mkstemp(suffix=".dec", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(np.ascontiguousarray(d.frames, dtype=np.uint8).data)
            f.write(np.ascontiguousarray(d.audio, dtype=np.float32).data)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Handoff(name, d.path, tuple(d.frames.shape), tuple(d.audio.shape), d.audio_present,
                   d.n_segments, d.duration)


def read_handoff(h: Handoff) -> DecodedVideo:
    """The :class:`DecodedVideo` a worker wrote; the file is removed."""
    with open(h.file, "rb") as f:
        frames = np.fromfile(f, np.uint8, int(np.prod(h.frames_shape))).reshape(h.frames_shape)
        audio = np.fromfile(f, np.float32, int(np.prod(h.audio_shape))).reshape(h.audio_shape)
    os.unlink(h.file)
    return DecodedVideo(path=h.path, frames=frames, audio=audio, audio_present=h.audio_present,
                        n_segments=h.n_segments, duration=h.duration)


def decode_to_file(path: str, spec: Any, folder: str | None) -> Any:
    """:func:`safe_decode`, the arrays handed off through a file in ``folder`` (a
    :class:`Handoff`); through the pipe when ``folder`` is None or has no room left."""
    res = safe_decode(path, spec)
    if folder is None or isinstance(res, str):
        return res
    try:
        return write_handoff(res, folder)
    except OSError:  # full or gone: the pipe still works
        return res


def worker_facts() -> dict:
    """What a worker process looks like from inside (for tests and the benchmark)."""
    return {"pid": os.getpid(), "threads": {k: os.environ.get(k) for k in THREAD_VARS},
            "torch_imported": "torch" in sys.modules, "open_clip_imported": "open_clip" in sys.modules,
            "nice": os.nice(0) if hasattr(os, "nice") else None}


def warm_up() -> int:
    """An empty task that loads the decode modules (used to time worker start-up)."""
    from . import audio, decode, logmel  # noqa: F401
    import decord  # noqa: F401

    return os.getpid()


__all__ = ["default_workers", "usable_cores", "init_worker", "safe_decode", "single_threaded_env",
           "THREAD_VARS", "warm_up", "worker_facts", "Handoff", "handoff_folder", "write_handoff",
           "read_handoff", "decode_to_file"]
