"""Writing encoded videos and questions as store shards: one shard per call
(:func:`write_shard`), or in a background thread so writing overlaps encoding (:class:`ShardQueue`)."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from store import ShardWriter

from .encode import EncodedVideo
from .errors import ExtractError


@dataclass
class ChunkResult:
    """What writing one shard did (returned by in-process and dask workers alike)."""

    shard: str | None
    videos: int = 0
    questions: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def write_shard(entry: str | Path, attrs: dict, videos: Sequence[EncodedVideo] = (),
                failures: Sequence[tuple[str, str]] = (), questions: dict | None = None
                ) -> ChunkResult:
    """Write one shard (videos, failures and/or questions) and rename it into place.  A write
    error (disk full, quota, I/O error) becomes an :class:`ExtractError` naming the shard; the
    unfinished shard stays a temp file that is never read, and the shards written before it
    are intact, so running the same command again resumes."""

    if not videos and not failures and not questions:
        return ChunkResult(None)
    w = None
    try:
        w = ShardWriter(entry, attrs)
        with w:
            _fill_shard(w, attrs, videos, failures, questions)
    except ExtractError:
        raise
    except (OSError, RuntimeError) as exc:      # h5py reports write errors as RuntimeError
        name = w.tmp_path if w is not None else f"a new shard of {entry}"
        raise ExtractError(f"could not write {name}: {exc}. The shards written before it are "
                           "intact and this one stays a temp file that is never read; fix the "
                           "cause (free disk space?) and run the same command again to resume"
                           ) from exc
    n_q = len(questions["ids"]) if questions else 0
    return ChunkResult(str(w.path), len(videos), n_q, list(failures))


def _fill_shard(w: Any, attrs: dict, videos: Sequence[EncodedVideo],
                failures: Sequence[tuple[str, str]], questions: dict | None) -> None:
    if videos:
        w.add_videos(
            ids=[v.video.video_id for v in videos],
            audio=np.stack([v.audio for v in videos]),
            audio_present=np.asarray([v.audio_present for v in videos], bool),
            visual=np.stack([v.visual for v in videos]),
            n_segments=np.asarray([v.n_segments for v in videos], np.int32),
            duration=np.asarray([v.duration for v in videos], np.float32),
            source_path=[v.video.path for v in videos],
            source_size=np.asarray([v.video.size for v in videos], np.int64),
            source_mtime=np.asarray([v.video.mtime for v in videos], np.float64),
            visual_patches=(np.stack([v.patches for v in videos]) if attrs["patches"] else None))
    for path, err in failures:
        w.add_failure(utf8(path), utf8(err))
    if questions:
        w.add_questions(**questions)


def utf8(text: str) -> str:
    """``text`` made encodable as UTF-8 (undecodable file-name bytes become ``\\udcNN``)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


class ShardQueue:
    """Writes shards in one background thread so HDF5 output overlaps encoding; at most one
    shard is being written while the next is filled."""

    def __init__(self, entry: Path, attrs: dict, on_done: Callable[[ChunkResult], None]):
        self.entry, self.attrs, self.on_done = entry, attrs, on_done
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="shard-writer")
        self.current: Future | None = None

    def submit(self, videos: list[EncodedVideo], failures: list[tuple[str, str]]) -> None:
        self.wait()
        self.current = self.pool.submit(write_shard, self.entry, self.attrs, videos, failures)

    def wait(self) -> None:
        if self.current is not None:
            fut, self.current = self.current, None
            self.on_done(fut.result())

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)
