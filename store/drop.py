"""drop_videos: remove videos from a store so that changed inputs can be re-extracted.

Each shard holding any of the videos is rewritten without them to a temp name and atomically
put in place of the old file (``os.replace``); questions and failures are kept as they are
(re-extraction adds the videos back).  A shard left with no rows at all is removed.  The index is
rebuilt at the end.  Call it while holding :class:`store.StoreLock`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from common.files import fsync_dir, replacing

from .attrs import read_attrs, write_attrs
from .checksums import BlockCrc
from .errors import StoreError
from .h5io import memory_h5, open_h5, read_str
from .index import rebuild_index
from .layout import complete_shards, entry_of
from .schema import CHECK_BLOCK, VIDEO_FIELDS, field_required
from .writer import create_shard_datasets

#: rows copied per read when rewriting a shard
COPY_ROWS = 256


def _rewrite_without(path: Path, keep: np.ndarray) -> bool:
    """Rewrite shard ``path`` keeping only video rows where ``keep``; False if it became empty."""
    with open_h5(path, "shard") as src:
        attrs = read_attrs(src)
    n_keep = int(keep.sum())
    if n_keep == 0 and int(attrs.get("n_questions", 0)) == 0 and int(attrs.get("n_failures", 0)) == 0:
        return False
    with replacing(path, "drop") as tmp, open_h5(path, "shard") as src, memory_h5(tmp) as dst:
        write_attrs(dst, {k: v for k, v in attrs.items() if k not in ("complete",)})
        dst.attrs["complete"] = False
        create_shard_datasets(dst, attrs)
        for f in VIDEO_FIELDS:
            if field_required(f, attrs):
                _copy_rows(src[f.path], dst, f, keep, n_keep)
        for group in ("questions", "failures"):
            del dst[group]
            src.copy(src[group], dst, name=group)
            src.copy(src[f"checksums/{group}"], dst["checksums"], name=group)
        dst.attrs["n_videos"] = n_keep
        dst.attrs["complete"] = True
    return True


def _copy_rows(s_ds: Any, dst: Any, f: Any, keep: np.ndarray, n_keep: int) -> None:
    """The kept rows of one video field, with their block checksums."""
    d_ds = dst[f.path]
    crc = BlockCrc(CHECK_BLOCK)
    d_ds.resize(n_keep, axis=0)
    w = 0
    for lo in range(0, len(keep), COPY_ROWS):
        m = keep[lo:lo + COPY_ROWS]
        if not m.any():
            continue
        block = (s_ds.asstr()[lo:lo + len(m)] if f.dtype == "str" else s_ds[lo:lo + len(m)])[m]
        d_ds[w:w + len(block)] = block
        crc.update(block)
        w += len(block)
    dst.create_dataset(f"checksums/{f.path}", data=crc.finish())


def drop_videos(entry_path: str | os.PathLike, ids: Iterable[str]) -> int:
    """Remove the given video ids from the store; returns how many were removed (ids not in the
    store are ignored).  Rebuilds the index when anything changed."""
    entry = entry_of(entry_path)
    wanted = {str(i) for i in ids}
    if not wanted:
        return 0
    dropped = 0
    for path in complete_shards(entry):
        with open_h5(path, "shard") as f:
            try:
                vids = read_str(f["videos/id"])
            except KeyError:
                raise StoreError(f"shard {path.name}: missing dataset videos/id") from None
        hit = np.isin(vids, list(wanted))
        if not hit.any():
            continue
        if not _rewrite_without(path, ~hit):
            path.unlink()
            fsync_dir(path.parent)
        dropped += int(hit.sum())
    if dropped:
        if complete_shards(entry):
            rebuild_index(entry)
        else:
            entry.unlink(missing_ok=True)
    return dropped
