"""The entry file ``feats.h5``: rebuild it from the complete shards, and read it back.

The entry file is derived data (see :mod:`store.schema`): :func:`rebuild_index` scans
``feats.shards/part-*.h5``, refuses incompatible shards and duplicate ids, and atomically
replaces ``feats.h5``.  :func:`read_index` loads it into an :class:`Index`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.files import replacing

from .attrs import incompatibility, read_attrs, store_attrs_of, write_attrs
from .checksums import file_sha256, fingerprint
from .errors import StoreError
from .h5io import STR_DTYPE, memory_h5, open_h5, read_str
from .layout import complete_shards, entry_of
from .schema import SCHEMA_VERSION


@dataclass
class ShardSummary:
    """What the index needs from one complete shard."""

    path: Path
    attrs: dict
    video_id: np.ndarray
    question_id: np.ndarray
    question_video_id: np.ndarray
    failure_path: np.ndarray
    failure_error: np.ndarray


def read_shard_summary(path: Path) -> ShardSummary:
    """Ids, attributes and failures of one shard; ``StoreError`` naming it if it is unreadable,
    incomplete, of another schema version, or its datasets are missing."""
    with open_h5(path, "shard") as f:
        attrs = read_attrs(f)
        if attrs.get("kind") != "shard":
            raise StoreError(f"shard {path.name}: not a store shard (attribute kind={attrs.get('kind')!r})")
        if not attrs.get("complete", False):
            raise StoreError(f"shard {path.name}: not marked complete (its writer did not finish)")
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"shard {path.name}: schema_version {attrs.get('schema_version')!r} differs "
                             f"from this code's {SCHEMA_VERSION}")
        try:
            return ShardSummary(
                path=path, attrs=attrs,
                video_id=read_str(f["videos/id"]),
                question_id=np.asarray(f["questions/id"][()], dtype=np.int64),
                question_video_id=read_str(f["questions/video_id"]),
                failure_path=read_str(f["failures/path"]),
                failure_error=read_str(f["failures/error"]),
            )
        except KeyError as exc:
            raise StoreError(f"shard {path.name}: missing dataset ({exc})") from None


@dataclass
class Index:
    """The contents of an entry file."""

    path: Path
    attrs: dict
    shard: list[str]
    shard_videos: np.ndarray
    shard_questions: np.ndarray
    shard_size: np.ndarray
    shard_mtime_ns: np.ndarray
    shard_sha256: list[str]
    video_id: np.ndarray
    question_id: np.ndarray
    question_video_row: np.ndarray
    failures: list[dict] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.shard_sha256)


def read_index(entry_path: str | os.PathLike) -> Index:
    """Load ``feats.h5``; ``StoreError`` if missing, not an entry file, or of another schema."""
    path = entry_of(entry_path)
    with open_h5(path, "store entry file") as f:
        attrs = read_attrs(f)
        if attrs.get("kind") != "entry" or "index" not in f:
            raise StoreError(f"{path} is not a feature store entry file (no 'kind=entry' attribute "
                             f"or 'index' group); rebuild it with: python cli.py store reindex {path}")
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{path}: store schema_version {attrs.get('schema_version')!r} differs from "
                             f"this code's schema version {SCHEMA_VERSION}")
        try:
            g = f["index"]
            return Index(
                path=path, attrs=attrs,
                shard=read_str(g["shard"]).tolist(),
                shard_videos=np.asarray(g["shard_videos"][()], dtype=np.int64),
                shard_questions=np.asarray(g["shard_questions"][()], dtype=np.int64),
                shard_size=np.asarray(g["shard_size"][()], dtype=np.int64),
                shard_mtime_ns=np.asarray(g["shard_mtime_ns"][()], dtype=np.int64),
                shard_sha256=read_str(g["shard_sha256"]).tolist(),
                video_id=read_str(g["video_id"]),
                question_id=np.asarray(g["question_id"][()], dtype=np.int64),
                question_video_row=np.asarray(g["question_video_row"][()], dtype=np.int64),
                failures=[{"path": p, "error": e} for p, e in
                          zip(read_str(f["failures/path"]).tolist(), read_str(f["failures/error"]).tolist())],
            )
        except KeyError as exc:
            raise StoreError(f"{path}: entry file lacks a dataset ({exc}); rebuild it with: "
                             f"python cli.py store reindex {path}") from None


def _old_sha(entry: Path) -> dict[str, tuple[int, int, str]]:
    """name -> (size, mtime_ns, sha256) from the previous index, if it can be read."""
    try:
        old = read_index(entry)
    except StoreError:
        return {}
    return {n: (int(s), int(m), h) for n, s, m, h in
            zip(old.shard, old.shard_size, old.shard_mtime_ns, old.shard_sha256)}


def rebuild_index(entry_path: str | os.PathLike) -> dict:
    """Rebuild ``feats.h5`` from the complete shards, atomically.

    Refuses (``StoreError``) a shard that is unreadable, incomplete or incompatible with the first
    (the message names the shard and the attribute), and a video id or question id held twice
    (the message names both shards).  Questions whose video is not in the store get video row -1
    (``verify_store`` reports them).  Returns a summary dict: path, shards, videos, questions,
    failures, questions_without_video, fingerprint.
    """
    entry = entry_of(entry_path)
    paths = complete_shards(entry)
    if not paths:
        raise StoreError(f"{entry}: no complete shards in {entry.parent / (entry.stem + '.shards')}")
    summaries = [read_shard_summary(p) for p in paths]
    _check_shards(summaries)
    video_id = np.concatenate([s.video_id for s in summaries]) if summaries else np.zeros(0, "<U1")
    row_of = {v: i for i, v in enumerate(video_id.tolist())}
    question_id = np.concatenate([s.question_id for s in summaries]).astype(np.int64)
    q_vid = np.concatenate([s.question_video_id for s in summaries])
    question_video_row = np.asarray([row_of.get(v, -1) for v in q_vid.tolist()], dtype=np.int64)
    sizes, mtimes, shas = _shard_digests(entry, paths)
    fail_path = np.concatenate([s.failure_path for s in summaries]).tolist()
    fail_error = np.concatenate([s.failure_error for s in summaries]).tolist()
    index = {"shard": [p.name for p in paths],
             "shard_videos": [len(s.video_id) for s in summaries],
             "shard_questions": [len(s.question_id) for s in summaries],
             "shard_size": sizes, "shard_mtime_ns": mtimes, "shard_sha256": shas,
             "video_id": video_id.tolist(), "question_id": question_id,
             "question_video_row": question_video_row}
    _write_entry(entry, summaries[0].attrs, index, fail_path, fail_error)
    return {
        "path": str(entry), "shards": len(paths), "videos": len(video_id), "questions": len(question_id),
        "failures": len(fail_path), "questions_without_video": int((question_video_row < 0).sum()),
        "fingerprint": fingerprint(shas),
    }


def _check_shards(summaries: list) -> None:
    """Every shard compatible with the first; no video id or question id in two shards."""
    first = summaries[0]
    for s in summaries[1:]:
        msg = incompatibility(s.attrs, f"shard {s.path.name}", first.attrs, f"shard {first.path.name}")
        if msg:
            raise StoreError(f"incompatible shards: {msg}")
    video_owner: dict[str, str] = {}
    question_owner: dict[int, str] = {}
    for s in summaries:
        for vid in s.video_id.tolist():
            if vid in video_owner:
                raise StoreError(f"duplicate video id {vid!r}: in shard {video_owner[vid]} and shard {s.path.name}")
            video_owner[vid] = s.path.name
        for qid in s.question_id.tolist():
            if qid in question_owner:
                raise StoreError(f"duplicate question id {qid}: in shard {question_owner[qid]} "
                                 f"and shard {s.path.name}")
            question_owner[qid] = s.path.name


def _shard_digests(entry: Path, paths: list[Path]) -> tuple[list[int], list[int], list[str]]:
    """Size, mtime and sha256 of each shard (the digest reused from the old index when size and
    mtime are unchanged)."""
    old = _old_sha(entry)
    sizes, mtimes, shas = [], [], []
    for p in paths:
        st = p.stat()
        prev = old.get(p.name)
        same = prev and prev[0] == st.st_size and prev[1] == st.st_mtime_ns
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
        shas.append(prev[2] if same else file_sha256(p))
    return sizes, mtimes, shas


#: index datasets holding strings (the others are int64)
_STR_INDEX = ("shard", "shard_sha256", "video_id")


def _write_entry(entry: Path, attrs: dict, index: dict, fail_path: list, fail_error: list) -> None:
    """The entry file, written to a temp file and renamed into place."""
    with replacing(entry) as tmp, memory_h5(tmp) as f:
        write_attrs(f, store_attrs_of(attrs))
        f.attrs["kind"] = "entry"
        f.attrs["n_videos"] = len(index["video_id"])
        f.attrs["n_questions"] = len(index["question_id"])
        f.attrs["n_failures"] = len(fail_path)
        g = f.create_group("index")
        for key, values in index.items():
            if key in _STR_INDEX:
                g.create_dataset(key, data=np.asarray(values, dtype=object), dtype=STR_DTYPE)
            else:
                g.create_dataset(key, data=np.asarray(values, np.int64))
        fg = f.create_group("failures")
        fg.create_dataset("path", data=np.asarray(fail_path, dtype=object), dtype=STR_DTYPE)
        fg.create_dataset("error", data=np.asarray(fail_error, dtype=object), dtype=STR_DTYPE)
