"""Where a store's files are: shard folder, complete shards, temp files, lock file."""
from __future__ import annotations

import os
from pathlib import Path

from .schema import SHARD_RE, lock_path, shard_dir


def entry_of(entry_path: str | os.PathLike) -> Path:
    return Path(os.fspath(entry_path))


def shards_dir_of(entry_path: str | os.PathLike) -> Path:
    return Path(shard_dir(os.fspath(entry_path)))


def lock_file_of(entry_path: str | os.PathLike) -> Path:
    return Path(lock_path(os.fspath(entry_path)))


def complete_shards(entry_path: str | os.PathLike) -> list[Path]:
    """The shard files named ``part-NNNNN.h5``, in number order (temp files excluded)."""
    d = shards_dir_of(entry_path)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), d / name) for name in os.listdir(d) if (m := SHARD_RE.match(name))]
    return [p for _, p in sorted(found)]


def temp_files(entry_path: str | os.PathLike) -> list[Path]:
    """Leftover temp files in the shard folder and beside the entry file (crashed writers)."""
    out = []
    d = shards_dir_of(entry_path)
    if d.is_dir():
        out += [d / n for n in sorted(os.listdir(d)) if n.startswith(".") and n.endswith(".tmp")]
    e = entry_of(entry_path)
    if e.parent.is_dir():
        prefix = "." + e.name + "."
        out += [e.parent / n for n in sorted(os.listdir(e.parent))
                if n.startswith(prefix) and n.endswith(".tmp")]
    return out
