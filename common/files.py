"""Atomic file writes: a temp file beside the target, flushed to disk, renamed into place, so a
reader sees the old file or the new one and a crash leaves no half-written file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; the parent folder must exist."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """``obj`` as JSON (sorted keys, trailing newline), written atomically."""
    return atomic_write(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")
