"""Atomic file writes: the new file is written under a temp name beside the target and renamed
into place, so a reader sees the old file or the new one and a crash leaves no half-written file
(only a ``.<name>[.<tag>].<pid>.tmp`` that the next writer may delete)."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def replacing(path: str | Path, tag: str = "") -> Iterator[Path]:
    """A temp path beside ``path`` for any writer (h5py, torch, plain bytes); on a clean exit it
    replaces ``path`` and the folder is synced, on an error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{'.' + tag if tag else ''}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, flushed to disk; the parent folder
    must exist."""
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """``obj`` as JSON (sorted keys, trailing newline), written atomically."""
    return atomic_write(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")
