"""Run extraction as dask.distributed tasks.

``--scheduler tcp://host:port`` uses an existing cluster; ``--dask-workers N`` starts a
``LocalCluster`` of N worker processes (one thread each).  Each task takes one chunk of
``shard_size`` videos (or ``question_shard_size`` questions), decodes it (``workers`` decode
threads inside the task, so decoding overlaps encoding), encodes it with the worker's encoders —
built once per worker process and cached (:func:`extract.encoders.get_encoders`) — and writes
its own shard.  Shard numbers are claimed atomically by :class:`store.ShardWriter`, so workers
never collide.  The client, which holds the store lock, rebuilds the entry file at the end.

A worker that dies (killed, out of memory) loses its running task, and the scheduler runs that
task again elsewhere.  If the dead worker had already renamed the task's shard into place, the
new attempt finds it (:func:`chunk_written`: a shard that appeared during this run and holds a
video or failure of the chunk) and returns it instead of writing the chunk twice.  When the
scheduler gives up on a task (``KilledWorker``), the run stops with an :class:`ExtractError`
saying to run the same command again; the shards written so far are kept.

Workers must see the same paths as the client (a shared file system) and have this package
importable.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from common.config import build, to_dict
from store.index import read_shard_summary
from store.layout import complete_shards

from .config import ExtractConfig
from .decode import DecodeSpec
from .discover import VideoFile
from .encoders import get_encoders
from .ahead import decode_window, iter_decoded
from .encode import encode_questions, encode_stream
from .errors import ExtractError
from .shards import ChunkResult, utf8, write_shard


#: decode threads inside one dask task when ``workers`` is -1 (auto): a dask worker's cores are
#: the cluster's to share, not this task's
DASK_DECODE_THREADS = 2


def chunk_written(entry: str, before: Sequence[str], videos: Sequence[VideoFile] = (),
                  question_ids: Sequence[int] = ()) -> ChunkResult | None:
    """The result of an earlier attempt of this task whose worker died after writing its
    shard: a complete shard not among ``before`` (the shards when the run began) that holds
    one of the chunk's videos, failures or questions; None if there is none."""

    ids, qids = {v.video_id for v in videos}, set(question_ids)
    paths = {utf8(v.path) for v in videos}
    for shard in complete_shards(entry):
        if shard.name in before:
            continue
        s = read_shard_summary(shard)
        mine = [v for v in s.video_id.tolist() if v in ids]
        failed = [(p, e) for p, e in zip(s.failure_path.tolist(), s.failure_error.tolist())
                  if p in paths]
        questions = sum(q in qids for q in s.question_id.tolist())
        if mine or failed or questions:
            return ChunkResult(str(shard), len(mine), questions, failed)
    return None


def process_video_chunk(chunk: Sequence[VideoFile], cfg_dict: dict, attrs: dict,
                        entry: str, before: Sequence[str] = ()) -> ChunkResult:
    """A dask task: decode, encode and write one shard of videos (failures recorded in it),
    unless an earlier attempt of it already did (:func:`chunk_written`)."""
    done = chunk_written(entry, set(before), videos=chunk)
    if done is not None:
        return done
    cfg = build(ExtractConfig, cfg_dict)
    enc = get_encoders(cfg)
    spec = DecodeSpec.from_config(cfg, enc.clip.image_size)
    threads = cfg.workers if cfg.workers >= 0 else DASK_DECODE_THREADS
    window = decode_window(cfg, threads, enc.clip.device.type)
    encoded, failures = [], []
    for v, res in encode_stream(iter_decoded(chunk, spec, threads, window, threads=True), enc, cfg):
        if isinstance(res, str):
            failures.append((v.path, res))
        else:
            encoded.append(res)
    return write_shard(entry, attrs, encoded, failures)


def process_question_chunk(records: Sequence[Any], cfg_dict: dict, attrs: dict,
                           entry: str, before: Sequence[str] = ()) -> ChunkResult:
    """A dask task: encode and write one shard of questions, unless an earlier attempt of it
    already did (:func:`chunk_written`)."""
    done = chunk_written(entry, set(before), question_ids=[r.question_id for r in records])
    if done is not None:
        return done
    cfg = build(ExtractConfig, cfg_dict)
    enc = get_encoders(cfg, audio=False)
    cols = encode_questions(records, enc, cfg, int(attrs["n_options"]))
    return write_shard(entry, attrs, questions=cols)


class DaskRunner:
    """A dask client (to ``cfg.scheduler`` or a new LocalCluster) that runs the chunks; the same
    interface as :class:`extract.pipeline.LocalRunner`."""

    def __init__(self, cfg: ExtractConfig):
        # dask's INFO lines (every worker start and stop) drown the progress; warnings stay.
        # Read when dask is first imported, here and in the worker processes it starts.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        from dask.distributed import Client, LocalCluster

        self.cfg = cfg
        self.cluster = None
        if cfg.scheduler:
            self.client = Client(cfg.scheduler)
        else:
            # a worker that dies makes distributed log warnings with tracebacks (lost heartbeats);
            # the run reports what it means itself (the task is retried, or KilledWorker)
            self.cluster = LocalCluster(n_workers=int(cfg.dask_workers), threads_per_worker=1,
                                        processes=True, dashboard_address=None,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)

    def describe(self) -> str:
        n = len(self.client.scheduler_info().get("workers", {}))
        where = self.cfg.scheduler or "LocalCluster"
        return f"dask ({where}, {n} workers)"

    def _run(self, fn: Callable, chunks: list, attrs: dict, entry: Path,
             on_result: Callable[[ChunkResult], None], *extra: Any) -> None:
        from dask.distributed import as_completed

        cfg_dict = to_dict(self.cfg)
        futures = [self.client.submit(fn, chunk, cfg_dict, attrs, str(entry), *extra, pure=False)
                   for chunk in chunks]
        try:
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except ExtractError:
                    raise
                except Exception as exc:   # KilledWorker, lost connection: not a bug of ours
                    raise ExtractError(
                        f"a dask task failed ({type(exc).__name__}: {exc}); the shards written so "
                        "far are kept: run the same command again to resume") from None
                on_result(result)
        finally:
            for fut in futures:
                fut.cancel()

    def run_videos(self, todo: Sequence[VideoFile], attrs: dict, entry: Path,
                   on_result: Callable[[ChunkResult], None],
                   on_video: Callable[[bool], None] = lambda failed: None) -> None:
        """One task per shard of videos; ``on_video(failed)`` once per video as chunks finish."""
        def on_chunk(r: ChunkResult) -> None:
            on_result(r)
            for failed in [False] * r.videos + [True] * len(r.failures):
                on_video(failed)

        n = self.cfg.shard_size
        chunks = [list(todo[i:i + n]) for i in range(0, len(todo), n)]
        before = [p.name for p in complete_shards(entry)]
        self._run(process_video_chunk, chunks, attrs, entry, on_chunk, before)

    def run_questions(self, records: Sequence[Any], attrs: dict, entry: Path,
                      on_result: Callable[[ChunkResult], None]) -> None:

        n = self.cfg.question_shard_size
        chunks = [list(records[i:i + n]) for i in range(0, len(records), n)]
        before = [p.name for p in complete_shards(entry)]
        self._run(process_question_chunk, chunks, attrs, entry, on_result, before)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
