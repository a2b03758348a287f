"""verify_store: check a store's files against its index, its schema and its checksums.

Returns the problems found as strings (an empty list means the store is sound).  Quick mode
compares shard sizes with the index; full mode also compares sha256 digests and every block's
CRC32, naming shard, dataset and row range of a damaged block.  Leftover temp files are listed
in ``result.notes``, not as problems.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from .attrs import incompatibility, read_attrs
from .checksums import block_crcs, file_sha256, n_blocks
from .errors import StoreError
from .h5io import read_str
from .index import Index, read_index
from .layout import complete_shards, entry_of, temp_files
from .schema import CHECK_BLOCK, SCHEMA_VERSION, fields_for, resolve_shape

#: blocks read per request when checking CRCs
CRC_READ_BLOCKS = 16


class VerifyResult(list):
    """The list of problems (``[]`` = ok) with ``notes`` (things worth knowing, not errors) and
    ``counts`` (shards, videos, questions checked)."""

    def __init__(self):
        super().__init__()
        self.notes: list[str] = []
        self.counts: dict[str, int] = {"shards": 0, "videos": 0, "questions": 0}


def _check_schema(f: h5py.File, name: str, attrs: dict, problems: list[str]) -> dict[str, int]:
    """Dataset presence, shapes, dtypes and row counts; returns rows per group."""
    rows = {g: int(attrs.get(f"n_{g}", -1)) for g in ("videos", "questions", "failures")}
    for fld in fields_for(attrs):
        if fld.path not in f:
            problems.append(f"shard {name}: dataset {fld.path} is missing")
            continue
        ds = f[fld.path]
        want = resolve_shape(fld, attrs)
        if not isinstance(ds, h5py.Dataset) or ds.shape[1:] != want:
            problems.append(f"shard {name}: dataset {fld.path} has shape {getattr(ds, 'shape', None)}, "
                            f"expected (rows,) + {want}")
            continue
        if fld.dtype == "str":
            ok = h5py.check_string_dtype(ds.dtype) is not None
        else:
            ok = ds.dtype == np.dtype(fld.dtype)
        if not ok:
            problems.append(f"shard {name}: dataset {fld.path} has dtype {ds.dtype}, expected {fld.dtype}")
        if ds.shape[0] != rows[fld.group]:
            problems.append(f"shard {name}: dataset {fld.path} has {ds.shape[0]} rows, but the shard "
                            f"attribute n_{fld.group} is {rows[fld.group]}")
        cpath = f"checksums/{fld.path}"
        if cpath not in f:
            problems.append(f"shard {name}: checksum dataset {cpath} is missing")
        elif f[cpath].shape != (n_blocks(ds.shape[0]),):
            problems.append(f"shard {name}: {cpath} has {f[cpath].shape[0]} entries for "
                            f"{ds.shape[0]} rows (expected {n_blocks(ds.shape[0])})")
    return rows


def _check_crcs(f: h5py.File, name: str, attrs: dict, problems: list[str]) -> None:
    """Recompute every block checksum; name shard, dataset and rows of each bad block."""
    step = CHECK_BLOCK * CRC_READ_BLOCKS
    for fld in fields_for(attrs):
        cpath = f"checksums/{fld.path}"
        if fld.path not in f or cpath not in f:
            continue
        ds = f[fld.path]
        stored = np.asarray(f[cpath][()], dtype=np.uint32)
        n = ds.shape[0]
        if len(stored) != n_blocks(n):
            continue  # reported by _check_schema
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            try:
                data = ds.asstr()[lo:hi] if fld.dtype == "str" else ds[lo:hi]
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"shard {name}: {fld.path} rows {lo}-{hi - 1} cannot be read: {exc}")
                continue
            got = block_crcs(data)
            b0 = lo // CHECK_BLOCK
            for j in np.flatnonzero(got != stored[b0:b0 + len(got)]).tolist():
                r0 = lo + j * CHECK_BLOCK
                problems.append(f"shard {name}: {fld.path} rows {r0}-{min(n, r0 + CHECK_BLOCK) - 1}: "
                                f"checksum mismatch (block {b0 + j}: stored {stored[b0 + j]:#010x}, "
                                f"computed {got[j]:#010x})")


#: what a problem of the index says to do
REINDEX = "(python cli.py store reindex PATH rebuilds it)"


def _check_index(index: Index, shard_names: list[str], shard_rows: dict, shard_ids: dict,
                 sizes: dict, problems: list[str], shard_dir: Path) -> None:
    listed = list(index.shard)
    for n in listed:
        if n not in shard_names:
            problems.append(f"index: shard {n} is listed but missing from {shard_dir}")
    for n in shard_names:
        if n not in listed:
            problems.append(f"index: shard {n} is complete but not in the index " + REINDEX)
    for i, n in enumerate(listed):
        if n not in sizes:
            continue
        if sizes[n] != int(index.shard_size[i]):
            problems.append(f"shard {n}: size {sizes[n]} bytes differs from the index ({int(index.shard_size[i])})")
        if n in shard_rows:
            if shard_rows[n]["videos"] != int(index.shard_videos[i]):
                problems.append(f"shard {n}: {shard_rows[n]['videos']} videos, index says {int(index.shard_videos[i])}")
            if shard_rows[n]["questions"] != int(index.shard_questions[i]):
                problems.append(f"shard {n}: {shard_rows[n]['questions']} questions, "
                                f"index says {int(index.shard_questions[i])}")
    if all(n in shard_ids for n in listed):
        vids = [v for n in listed for v in shard_ids[n][0]]
        qids = [q for n in listed for q in shard_ids[n][1]]
        if vids != index.video_id.tolist():
            problems.append("index: index/video_id does not match the shards' video ids " + REINDEX)
        if qids != index.question_id.tolist():
            problems.append("index: index/question_id does not match the shards' question ids " + REINDEX)
        else:
            row_of = {v: i for i, v in enumerate(vids)}
            want = [row_of.get(v, -1) for n in listed for v in shard_ids[n][2]]
            if want != index.question_video_row.tolist():
                problems.append("index: index/question_video_row does not match the shards " + REINDEX)


def verify_store(entry_path: str | os.PathLike, quick: bool = False,
                 questions_without_video_ok: bool = False) -> VerifyResult:
    """Check a store; returns the problems found (``[]`` = ok), with ``.notes`` and ``.counts``.
    ``questions_without_video_ok``: questions whose video is not in the store are notes, not
    problems (training and evaluation count them as missing)."""
    entry = entry_of(entry_path)
    res = VerifyResult()
    for t in temp_files(entry):
        res.notes.append(f"temp file {t} (left by an unfinished writer; not part of the store, safe to delete "
                         "when no writer is running)")
    index: Index | None = None
    try:
        index = read_index(entry)
    except StoreError as exc:
        res.append(str(exc))
    paths = complete_shards(entry)
    if not paths:
        res.append(f"{entry}: no complete shards in {entry.parent / (entry.stem + '.shards')}")
    ref = (index.attrs, f"entry file {entry.name}") if index is not None else None
    sha_of = dict(zip(index.shard, index.shard_sha256)) if index is not None else {}
    shard_rows: dict[str, dict] = {}
    shard_ids: dict[str, tuple[list, list, list]] = {}
    sizes: dict[str, int] = {}
    for p in paths:
        sizes[p.name] = p.stat().st_size
        ref = _check_shard(p, ref, quick, shard_rows, shard_ids, res)
        if not quick and p.name in sha_of:
            digest = file_sha256(p)
            if digest != sha_of[p.name]:
                res.append(f"shard {p.name}: sha256 {digest[:16]}... differs from the index "
                           f"({sha_of[p.name][:16]}...)")
    if index is not None:
        _check_index(index, [p.name for p in paths], shard_rows, shard_ids, sizes, res,
                     paths[0].parent if paths else entry.parent)
    owner_v, owner_q = _check_ids(shard_ids, questions_without_video_ok, res)
    res.counts = {"shards": len(paths), "videos": len(owner_v), "questions": len(owner_q)}
    return res


def _check_shard(p: Path, ref: tuple[dict, str] | None, quick: bool, shard_rows: dict,
                 shard_ids: dict, res: VerifyResult) -> tuple[dict, str] | None:
    """One shard: readable, complete, this schema, compatible with ``ref`` (attributes, name;
    the first readable shard becomes it when there is no index), rows and checksums.  Returns
    the reference for the next shard."""
    name = p.name
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        res.append(f"shard {name}: cannot be read (truncated or corrupt): {exc}")
        return ref
    with f:
        attrs = read_attrs(f)
        if attrs.get("kind") != "shard":
            res.append(f"shard {name}: not a store shard (attribute kind={attrs.get('kind')!r})")
            return ref
        if not attrs.get("complete", False):
            res.append(f"shard {name}: not marked complete")
        if attrs.get("schema_version") != SCHEMA_VERSION:
            res.append(f"shard {name}: schema_version {attrs.get('schema_version')!r} differs from "
                       f"{SCHEMA_VERSION}")
            return ref
        if ref is None:
            ref = (attrs, f"shard {name}")
        else:
            msg = incompatibility(attrs, f"shard {name}", *ref)
            if msg:
                res.append(msg)
        try:
            shard_rows[name] = _check_schema(f, name, attrs, res)
            shard_ids[name] = (read_str(f["videos/id"]).tolist(),
                               np.asarray(f["questions/id"][()], dtype=np.int64).tolist(),
                               read_str(f["questions/video_id"]).tolist())
            if not quick:
                _check_crcs(f, name, attrs, res)
        except (KeyError, OSError) as exc:
            res.append(f"shard {name}: cannot be read: {exc}")
    return ref


def _check_ids(shard_ids: dict, questions_without_video_ok: bool,
               res: VerifyResult) -> tuple[dict[str, str], dict[int, str]]:
    """Video and question ids unique across shards; questions whose video is missing reported
    (as notes when that is acceptable).  Returns the owning shard of each id."""
    owner_v: dict[str, str] = {}
    owner_q: dict[int, str] = {}
    for name, (vids, qids, _) in shard_ids.items():
        for v, c in Counter(vids).items():
            if c > 1:
                res.append(f"duplicate video id {v!r}: {c} times in shard {name}")
        for q, c in Counter(qids).items():
            if c > 1:
                res.append(f"duplicate question id {q}: {c} times in shard {name}")
        for v in set(vids):
            if v in owner_v:
                res.append(f"duplicate video id {v!r}: in shard {owner_v[v]} and shard {name}")
            owner_v.setdefault(v, name)
        for q in set(qids):
            if q in owner_q:
                res.append(f"duplicate question id {q}: in shard {owner_q[q]} and shard {name}")
            owner_q.setdefault(q, name)
    missing: dict[str, list] = {}
    for name, (_, qids, qvids) in shard_ids.items():
        for q, v in zip(qids, qvids):
            if v not in owner_v:
                missing.setdefault(v, []).append((q, name))
    for v, refs in sorted(missing.items()):
        ex = ", ".join(f"{q} (shard {n})" for q, n in refs[:3])
        msg = f"video {v!r} is not in the store but {len(refs)} question(s) point at it, e.g. {ex}"
        (res.notes if questions_without_video_ok else res).append(msg)
    return owner_v, owner_q
