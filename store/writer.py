"""ShardWriter: write one shard of the feature store, atomically.

A writer claims a fresh shard number (``O_EXCL`` on the temp name, then a check that the final
name is free, so concurrent writers in other processes never collide), appends rows to
resizable chunked datasets, keeps running per-block CRC32 checksums of what it wrote, and on
:meth:`ShardWriter.close` stores the checksums, marks the shard complete, writes the file,
fsyncs it and renames ``.part-NNNNN.h5.tmp`` to ``part-NNNNN.h5``.  If anything fails the temp
file is left (and never read); the rest of the store is untouched.  The writer does not update
the entry file: call :func:`store.rebuild_index` once the writers of a run are done.

The shard is built in memory (HDF5's ``core`` driver, no backing store) and its file image is
written to the temp file with plain ``write`` calls on close.  HDF5 itself therefore never meets
a failed write: a full disk, a quota or a file-size limit is an ordinary ``OSError`` from
:meth:`ShardWriter.close`.  (When HDF5 writes to disk directly, a failed write mid-file leaves
its caches in a state that crashed the process with SIGSEGV in our tests.)  The cost is the
shard's size in memory while it is written (``shard_size`` videos or ``question_shard_size``
questions).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from common.files import fsync_dir

from .attrs import incompatibility, normalize_attrs, write_attrs
from .checksums import BlockCrc
from .errors import StoreError
from .h5io import chunk_rows, numpy_dtype, write_synced
from .index import read_index
from .layout import entry_of, shards_dir_of
from .schema import (CHECK_BLOCK, SHARD_RE, SHARD_TMP_RE, Field, check_video_id, fields_for,
                     resolve_shape, shard_name, tmp_shard_name)

MAX_CLAIM_TRIES = 100000


def claim_shard_number(shard_folder: Path) -> tuple[int, Path]:
    """Create a fresh ``.part-NNNNN.h5.tmp`` with ``O_EXCL`` whose final name is not taken."""
    shard_folder.mkdir(parents=True, exist_ok=True)
    used = [int(m.group(1)) for n in os.listdir(shard_folder)
            if (m := SHARD_RE.match(n) or SHARD_TMP_RE.match(n))]
    number = max(used) + 1 if used else 0
    for _ in range(MAX_CLAIM_TRIES):
        tmp = shard_folder / tmp_shard_name(number)
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            number += 1
            continue
        os.close(fd)
        # A writer that held this temp name may have finished (renamed it) before we created it.
        if (shard_folder / shard_name(number)).exists():
            tmp.unlink()
            number += 1
            continue
        return number, tmp
    raise StoreError(f"{shard_folder}: could not claim a shard number after {MAX_CLAIM_TRIES} tries")


def create_shard_datasets(h5: h5py.File, attrs: Mapping[str, Any]) -> None:
    """Create every dataset a shard of this store holds, with 0 rows, resizable, chunked by rows."""
    for f in fields_for(attrs):
        shape = resolve_shape(f, attrs)
        itemsize = 16 if f.dtype == "str" else np.dtype(f.dtype).itemsize
        h5.create_dataset(f.path, shape=(0,) + shape, maxshape=(None,) + shape,
                          dtype=numpy_dtype(f.dtype), chunks=(chunk_rows(shape, itemsize),) + shape)


def _as_rows(value: Any, f: Field, attrs: Mapping[str, Any], n: int, where: str) -> np.ndarray:
    """Validate one column of an add_* call: n rows of the field's shape, castable dtype."""
    want = (n,) + resolve_shape(f, attrs)
    if f.dtype == "str":
        if isinstance(value, (str, bytes)):
            raise StoreError(f"{where}: {f.name} must be a sequence of strings, got a single string")
        arr = np.asarray(value, dtype=object)
        if arr.size == 0 and n == 0:
            arr = arr.reshape(want)
        if arr.shape != want:
            raise StoreError(f"{where}: {f.name} has shape {arr.shape}, expected {want}")
        for v in arr.ravel().tolist():
            if not isinstance(v, str):
                raise StoreError(f"{where}: {f.name} must hold str values, got {type(v).__name__} {v!r}")
        return arr
    arr = np.asarray(value)
    if arr.size == 0 and n == 0:
        arr = arr.reshape(want)
    if arr.shape != want:
        raise StoreError(f"{where}: {f.name} has shape {arr.shape}, expected {want}")
    dt = np.dtype(f.dtype)
    if dt.kind == "b":
        if arr.dtype.kind != "b":
            raise StoreError(f"{where}: {f.name} must be a bool array, got {arr.dtype}")
    elif dt.kind in "iu":
        if arr.dtype.kind not in "iu" and arr.size:
            raise StoreError(f"{where}: {f.name} must be an integer array, got {arr.dtype}")
        info = np.iinfo(dt)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise StoreError(f"{where}: {f.name} has values outside {dt} range")
    elif dt.kind == "f":
        if arr.dtype.kind not in "fiu" and arr.size:
            raise StoreError(f"{where}: {f.name} must be a float array, got {arr.dtype}")
        if arr.size and not np.isfinite(arr).all():
            raise StoreError(f"{where}: {f.name} holds NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=dt)


class ShardWriter:
    """Write one shard: ``add_videos`` / ``add_questions`` / ``add_failure``, then ``close()``.

    ``attrs`` must hold every key of :data:`store.schema.STORE_ATTRS` (``schema_version`` and
    ``package_version`` are filled in when absent).  If the store already has an entry file, the
    attributes must be compatible with it and new ids must not already be in it.
    Used as a context manager, a normal exit closes (commits) the shard; an exception leaves the
    temp file in place, never renamed, and re-raises.
    """

    def __init__(self, entry_path: str | os.PathLike, attrs: Mapping[str, Any]):
        self.entry_path = entry_of(entry_path)
        self.attrs = normalize_attrs(attrs, f"ShardWriter({self.entry_path})")
        self._known_videos: set[str] = set()
        self._known_questions: set[int] = set()
        if self.entry_path.exists():
            index = read_index(self.entry_path)
            msg = incompatibility(self.attrs, "new shard", index.attrs, f"store {self.entry_path}")
            if msg:
                raise StoreError(f"cannot add to the store: {msg}")
            self._known_videos = set(index.video_id.tolist())
            self._known_questions = set(index.question_id.tolist())
        self.number, self.tmp_path = claim_shard_number(shards_dir_of(self.entry_path))
        self.path = self.tmp_path.parent / shard_name(self.number)
        self._fields = {f.path: f for f in fields_for(self.attrs)}
        self._crc = {p: BlockCrc(CHECK_BLOCK) for p in self._fields}
        self._rows = {"videos": 0, "questions": 0, "failures": 0}
        self._video_ids: set[str] = set()
        self._question_ids: set[int] = set()
        self._state = "open"
        try:
            self._h5 = h5py.File(self.tmp_path, "w", driver="core", backing_store=False)
            write_attrs(self._h5, self.attrs)
            self._h5.attrs["kind"] = "shard"
            self._h5.attrs["complete"] = False
            create_shard_datasets(self._h5, self.attrs)
        except BaseException:
            self._state = "failed"
            self._close_handle()
            raise

    # -- appending ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"shard writer {self.tmp_path.name} is {self._state}; no more writes")

    def _append(self, path: str, arr: np.ndarray) -> None:
        """Append rows to one dataset and to its running checksum (the one place bytes are written)."""
        ds = self._h5[path]
        n = ds.shape[0]
        ds.resize(n + len(arr), axis=0)
        ds[n:n + len(arr)] = arr
        self._crc[path].update(arr)

    def _append_group(self, group: str, columns: dict[str, np.ndarray], n: int) -> None:
        try:
            for name, arr in columns.items():
                self._append(f"{group}/{name}", arr)
        except BaseException:
            self._state = "failed"   # datasets now disagree in length: only abort() remains
            raise
        self._rows[group] += n

    def add_videos(self, ids: Sequence[str], audio, audio_present, visual, n_segments, duration,
                   source_path: Sequence[str], source_size, source_mtime, visual_patches=None) -> None:
        """Append N videos.  Refuses (``StoreError``, naming it) an id already in this shard or in
        the store's index, and arrays whose shapes or dtypes do not match the store attributes."""
        self._check_open()
        where = f"add_videos to {self.tmp_path.name}"
        ids = list(ids) if not isinstance(ids, str) else [ids]
        n = len(ids)
        for v in ids:
            try:
                check_video_id(v)
            except ValueError as exc:
                raise StoreError(f"{where}: {exc}") from None
        seen: set[str] = set()
        for v in ids:
            if v in seen or v in self._video_ids:
                raise StoreError(f"{where}: video id {v!r} is already in this shard")
            if v in self._known_videos:
                raise StoreError(f"{where}: video id {v!r} is already in the store {self.entry_path} "
                                 "(drop it with store.drop_videos before re-extracting)")
            seen.add(v)
        patches = int(self.attrs["patches"])
        if patches and visual_patches is None:
            raise StoreError(f"{where}: the store has patches={patches}; visual_patches is required")
        if not patches and visual_patches is not None:
            raise StoreError(f"{where}: visual_patches given but the store has patches=0")
        given = {"id": ids, "audio": audio, "audio_present": audio_present, "visual": visual,
                 "visual_patches": visual_patches, "n_segments": n_segments, "duration": duration,
                 "source_path": source_path, "source_size": source_size, "source_mtime": source_mtime}
        columns = self._columns("videos", given, n, where)
        ns = columns["n_segments"]
        if n and (ns.min() < 1 or ns.max() > self.attrs["T"]):
            raise StoreError(f"{where}: n_segments must be in 1..T={self.attrs['T']}, got {ns.min()}..{ns.max()}")
        self._append_group("videos", columns, n)
        self._video_ids.update(ids)

    def add_questions(self, ids, video_ids: Sequence[str], splits: Sequence[str], types, answers,
                      answer_texts: Sequence[str], texts: Sequence[str], sentence, tokens, token_mask,
                      options_text=None, options=None) -> None:
        """Append M questions.  Refuses a question id already in this shard or in the store."""
        self._check_open()
        where = f"add_questions to {self.tmp_path.name}"
        ids_arr = np.asarray(ids)
        if ids_arr.ndim != 1 or (ids_arr.size and ids_arr.dtype.kind not in "iu"):
            raise StoreError(f"{where}: ids must be a 1-d integer array, got {ids_arr.dtype} {ids_arr.shape}")
        m = len(ids_arr)
        seen: set[int] = set()
        for q in ids_arr.tolist():
            if q in seen or q in self._question_ids:
                raise StoreError(f"{where}: question id {q} is already in this shard")
            if q in self._known_questions:
                raise StoreError(f"{where}: question id {q} is already in the store {self.entry_path}")
            seen.add(q)
        for v in list(video_ids):
            try:
                check_video_id(v)
            except ValueError as exc:
                raise StoreError(f"{where}: video_ids: {exc}") from None
        k = int(self.attrs["n_options"])
        if k and (options is None or options_text is None):
            raise StoreError(f"{where}: the store has n_options={k}; options and options_text are required")
        if not k and (options is not None or options_text is not None):
            raise StoreError(f"{where}: options given but the store has n_options=0")
        given = {"id": ids_arr, "video_id": video_ids, "split": splits, "type": types, "answer": answers,
                 "answer_text": answer_texts, "text": texts, "sentence": sentence, "tokens": tokens,
                 "token_mask": token_mask, "options_text": options_text, "options": options}
        columns = self._columns("questions", given, m, where)
        for name, vocab in (("type", "type_names"), ("answer", "answer_vocab")):
            col, size = columns[name], len(self.attrs[vocab])
            if m and (col.min() < -1 or col.max() >= size):
                raise StoreError(f"{where}: {name} must be in -1..{size - 1} (attrs[{vocab!r}]), "
                                 f"got {col.min()}..{col.max()}")
        self._append_group("questions", columns, m)
        self._question_ids.update(ids_arr.tolist())

    def add_failure(self, path: str, error: str) -> None:
        """Record an input the extractor could not use."""
        self._check_open()
        where = f"add_failure to {self.tmp_path.name}"
        columns = self._columns("failures", {"path": [str(path)], "error": [str(error)]}, 1, where)
        self._append_group("failures", columns, 1)

    def _columns(self, group: str, given: dict, n: int, where: str) -> dict[str, np.ndarray]:
        cols = {}
        for path, f in self._fields.items():
            if f.group != group:
                continue
            if given.get(f.name) is None:
                raise StoreError(f"{where}: {f.name} is required")
            cols[f.name] = _as_rows(given[f.name], f, self.attrs, n, where)
        return cols

    # -- finishing ---------------------------------------------------------------------------
    @property
    def n_videos(self) -> int:
        return self._rows["videos"]

    @property
    def n_questions(self) -> int:
        return self._rows["questions"]

    def close(self) -> Path:
        """Write checksums, mark complete, flush + fsync, rename to ``part-NNNNN.h5``; its path."""
        self._check_open()
        try:
            for path, crc in self._crc.items():
                self._h5.create_dataset(f"checksums/{path}", data=crc.finish())
            self._h5.attrs["n_videos"] = self._rows["videos"]
            self._h5.attrs["n_questions"] = self._rows["questions"]
            self._h5.attrs["n_failures"] = self._rows["failures"]
            self._h5.attrs["complete"] = True
            self._h5.flush()
            image = self._h5.id.get_file_image()
            self._h5.close()
            write_synced(self.tmp_path, image)       # our claimed temp name; truncates it
            del image
            if self.path.exists():  # cannot happen with claim_shard_number; never overwrite
                raise StoreError(f"{self.path} appeared while writing {self.tmp_path.name}; not replacing it")
            os.rename(self.tmp_path, self.path)
            fsync_dir(self.path.parent)
        except BaseException:
            self._state = "failed"
            self._close_handle()
            raise
        self._state = "closed"
        return self.path

    def _close_handle(self) -> None:
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            try:
                if h5.id.valid:
                    h5.close()
            except Exception:
                pass

    def abort(self) -> None:
        """Discard the shard: close and remove the temp file."""
        if self._state == "closed":
            raise StoreError(f"shard {self.path.name} is already committed; use drop_videos to remove rows")
        self._close_handle()
        self.tmp_path.unlink(missing_ok=True)
        self._state = "aborted"

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            if self._state == "open":
                self.close()
        else:
            if self._state == "open":
                self._state = "failed"
            self._close_handle()  # the temp file stays, never renamed
        return False
