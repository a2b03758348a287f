"""Decoding ahead in worker processes (or threads, inside dask tasks): :class:`DecodeAhead` and
the window sizes it runs with.  Why it is shaped so: docs/EXTRACTION.md."""
from __future__ import annotations

import math
import multiprocessing as mp
import shutil
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterable, Iterator

from .clip_models import model_config
from .config import ExtractConfig, encoder_batch_size
from .decode import DecodedVideo, DecodeSpec
from .decode_worker import (Handoff, decode_to_file, default_workers, handoff_folder, init_worker,
                            read_handoff, safe_decode, single_threaded_env)
from .discover import VideoFile

#: CPU priority of decode workers relative to the main process (which runs the encoders): with
#: one worker per core, the encoders (CPU) or the feeding of the GPU come first and decoding
#: takes the remaining cycles
DECODE_NICE = 10
#: at most this many bytes of decoded videos are waiting (hand-off files in RAM) at the start of a run
DECODE_AHEAD_BYTES = 8 << 30
#: videos per decode worker submitted before the encoders are ready
STARTUP_PER_WORKER = 32


def resolve_workers(workers: int) -> int:
    """Decode worker processes for ``workers`` (-1 = one per usable core)."""
    return default_workers() if workers < 0 else int(workers)


def _new_pool(workers: int, nice: int = DECODE_NICE) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_worker,
                               initargs=(nice,))


def _isolated_decode(path: str, spec: DecodeSpec) -> DecodedVideo | str:
    """Decode one file in its own process (after a decoder process crashed)."""
    pool = _new_pool(1)
    try:
        with single_threaded_env():
            fut = pool.submit(safe_decode, path, spec)
        return fut.result()
    except BrokenProcessPool:
        return f"{path}: the decoder process crashed on this file"
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class DecodeAhead:
    """Decode ``videos`` in ``workers`` spawn processes (or threads, inside dask tasks), up to
    ``window`` ahead; iterating yields ``(video, DecodedVideo or error message)`` in input order.
    ``workers=0`` decodes in this process, lazily.  :meth:`start` submits the first window, so
    decoding can run while the caller does other work (building the encoders).  If a decoder
    process dies (a crashing decoder on a hostile file), the video waited on is retried alone in
    a fresh process and the rest are resubmitted to a fresh pool.  Worker processes are spawned
    single-threaded (:mod:`extract.decode_worker`)."""

    def __init__(self, videos: Iterable[VideoFile], spec: DecodeSpec, workers: int, window: int,
                 threads: bool = False, startup_window: int = 0):
        self.spec, self.workers, self.threads = spec, int(workers), threads
        self.window = max(1, int(window))
        #: videos submitted by :meth:`start` (more than ``window`` lets the workers run ahead
        #: while the encoders load; the queue then drains to ``window``)
        self.startup_window = max(self.window, int(startup_window))
        self.it = iter(videos)
        self.exhausted = False
        self.pool: Any = None
        self.pending: deque[tuple[VideoFile, Future]] = deque()
        self.folder: str | None = None  # hand-off files of the worker processes

    def _new(self) -> Any:
        if self.threads:
            return ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
        if self.folder is None:
            self.folder = handoff_folder(self.startup_window * video_bytes(self.spec))
        return _new_pool(self.workers)

    def _submit(self, v: VideoFile) -> Future:
        if self.threads:
            return self.pool.submit(safe_decode, v.path, self.spec)
        with single_threaded_env():   # worker processes are spawned on submit: env inherited
            return self.pool.submit(decode_to_file, v.path, self.spec, self.folder)

    def _fill(self, window: int | None = None) -> None:
        while not self.exhausted and len(self.pending) < (window or self.window):
            v = next(self.it, None)
            if v is None:
                self.exhausted = True
                break
            self.pending.append((v, self._submit(v)))

    def start(self) -> "DecodeAhead":
        if self.workers > 0 and self.pool is None:
            self.pool = self._new()
            self._fill(self.startup_window)
        return self

    def __iter__(self) -> Iterator[tuple[VideoFile, DecodedVideo | str]]:
        if self.workers <= 0:
            for v in self.it:
                yield v, safe_decode(v.path, self.spec)
            return
        self.start()
        try:
            while True:
                self._fill()
                if not self.pending:
                    return
                v, fut = self.pending.popleft()
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    res = _isolated_decode(v.path, self.spec)
                    self.pool = self._new()
                    self.pending = deque((pv, self._submit(pv)) for pv, _ in self.pending)
                yield v, read_handoff(res) if isinstance(res, Handoff) else res
        finally:
            self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        if self.folder is not None:  # files of videos decoded but not consumed go with it
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def iter_decoded(videos: Iterable[VideoFile], spec: DecodeSpec, workers: int, window: int,
                 threads: bool = False) -> Iterator[tuple[VideoFile, DecodedVideo | str]]:
    """Iterate a :class:`DecodeAhead` (the decoding starts at the first ``next``)."""
    yield from DecodeAhead(videos, spec, workers, window, threads)


def clip_input_size(model_name: str) -> int | None:
    """The open_clip model's own input size from its JSON config file, found without importing
    open_clip (and torch); None when there is no such file (then decoding waits for the model)."""
    try:
        size = (model_config(model_name) or {})["vision_cfg"]["image_size"]
        return int(size[0] if isinstance(size, (list, tuple)) else size)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def decode_window(cfg: ExtractConfig, workers: int, device_type: str | None = None) -> int:
    """Videos decoded ahead: enough for every worker to hold two, plus one encoder batch (on
    ``device_type``, when it is known)."""
    return 2 * max(workers, 1) + math.ceil(encoder_batch_size(cfg, device_type) / cfg.T)


def video_bytes(spec: DecodeSpec) -> int:
    """Bytes of one decoded video (frames and the audio front end's float32 inputs)."""
    return int(spec.T) * (int(spec.image_size) ** 2 * 3 + math.prod(spec.front_end.shape) * 4)


def startup_window(cfg: ExtractConfig, workers: int, image_size: int) -> int:
    """Videos submitted before the encoders load: up to :data:`STARTUP_PER_WORKER` per worker
    (importing torch and open_clip and building the encoders took 16-29 s on the H100 machine;
    a 60-s video decodes in about one), within :data:`DECODE_AHEAD_BYTES` (or 1/8 of the
    physical memory, if less) of decoded frames and patches."""
    import os

    per_video = video_bytes(DecodeSpec.from_config(cfg, int(image_size)))
    budget = DECODE_AHEAD_BYTES
    try:
        budget = min(budget, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 8)
    except (ValueError, OSError, AttributeError):
        pass
    base = decode_window(cfg, workers)
    return max(base, min(base + STARTUP_PER_WORKER * max(workers, 1), budget // max(per_video, 1)))
