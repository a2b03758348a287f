"""Run extraction as dask.distributed tasks.

``--scheduler tcp://host:port`` uses an existing cluster; ``--dask-workers N`` starts a
``LocalCluster`` of N worker processes (one thread each).  Each task takes one chunk of
``shard_size`` videos (or ``question_shard_size`` questions), decodes it (``workers`` decode
threads inside the task, so decoding overlaps encoding), encodes it with the worker's encoders —
built once per worker process and cached (:func:`extract.encoders.get_encoders`) — and writes
its own shard.  Shard numbers are claimed atomically by :class:`store.ShardWriter`, so workers
never collide.  The client, which holds the store lock, rebuilds the entry file at the end.

Workers must see the same paths as the client (a shared file system) and have this package
importable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from store.config_io import build, to_dict

from .config import ExtractConfig, encoder_batch_size
from .decode import DecodeSpec
from .discover import VideoFile
from .encoders import get_encoders
from .pipeline import (ChunkResult, decode_window, encode_questions, encode_videos, iter_decoded,
                       write_shard)


#: decode threads inside one dask task when ``workers`` is -1 (auto): a dask worker's cores are
#: the cluster's to share, not this task's
DASK_DECODE_THREADS = 2


def process_video_chunk(chunk: Sequence[VideoFile], cfg_dict: dict, attrs: dict,
                        entry: str) -> ChunkResult:
    """A dask task: decode, encode and write one shard of videos (failures recorded in it)."""
    cfg = build(ExtractConfig, cfg_dict)
    enc = get_encoders(cfg)
    spec = DecodeSpec.from_config(cfg, enc.clip.image_size)
    threads = cfg.workers if cfg.workers >= 0 else DASK_DECODE_THREADS
    batch = encoder_batch_size(cfg, enc.clip.device.type)
    window = decode_window(cfg, threads, enc.clip.device.type)
    encoded, waiting, failures = [], [], []
    for v, res in iter_decoded(chunk, spec, threads, window, threads=True):
        if isinstance(res, str):
            failures.append((v.path, res))
            continue
        waiting.append((v, res))
        if sum(len(d.frames) for _, d in waiting) >= batch:
            encoded += encode_videos(waiting, enc, cfg)
            waiting = []
    encoded += encode_videos(waiting, enc, cfg)
    return write_shard(entry, attrs, encoded, failures)


def process_question_chunk(records: Sequence[Any], cfg_dict: dict, attrs: dict,
                           entry: str) -> ChunkResult:
    """A dask task: encode and write one shard of questions."""
    cfg = build(ExtractConfig, cfg_dict)
    enc = get_encoders(cfg, audio=False)
    cols = encode_questions(records, enc, cfg, int(attrs["n_options"]))
    return write_shard(entry, attrs, questions=cols)


class DaskRunner:
    """A dask client (to ``cfg.scheduler`` or a new LocalCluster) that runs the chunks."""

    def __init__(self, cfg: ExtractConfig):
        from dask.distributed import Client, LocalCluster

        self.cfg = cfg
        self.cluster = None
        if cfg.scheduler:
            self.client = Client(cfg.scheduler)
        else:
            self.cluster = LocalCluster(n_workers=int(cfg.dask_workers), threads_per_worker=1,
                                        processes=True, dashboard_address=None)
            self.client = Client(self.cluster)

    def describe(self) -> str:
        n = len(self.client.scheduler_info().get("workers", {}))
        where = self.cfg.scheduler or "LocalCluster"
        return f"dask ({where}, {n} workers)"

    def _run(self, fn: Callable, chunks: list, attrs: dict, entry: Path,
             on_result: Callable[[ChunkResult], None]) -> None:
        from dask.distributed import as_completed

        cfg_dict = to_dict(self.cfg)
        futures = [self.client.submit(fn, chunk, cfg_dict, attrs, str(entry), pure=False)
                   for chunk in chunks]
        try:
            for fut in as_completed(futures):
                on_result(fut.result())
        finally:
            for fut in futures:
                fut.cancel()

    def run_videos(self, todo: Sequence[VideoFile], attrs: dict, entry: Path,
                   on_result: Callable[[ChunkResult], None]) -> None:
        n = self.cfg.shard_size
        chunks = [list(todo[i:i + n]) for i in range(0, len(todo), n)]
        self._run(process_video_chunk, chunks, attrs, entry, on_result)

    def run_questions(self, records: Sequence[Any], attrs: dict, entry: Path,
                      on_result: Callable[[ChunkResult], None]) -> None:
        n = self.cfg.question_shard_size
        chunks = [list(records[i:i + n]) for i in range(0, len(records), n)]
        self._run(process_question_chunk, chunks, attrs, entry, on_result)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
