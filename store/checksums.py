"""Integrity data: per-block CRC32 of dataset rows, sha256 of files, the store fingerprint.

The block checksum is defined in :mod:`store.schema`: ``zlib.crc32`` over the raw little-endian
C-order bytes of a block of ``CHECK_BLOCK`` rows, or over each string's UTF-8 bytes plus a NUL.
:class:`BlockCrc` computes it incrementally while rows are appended in pieces of any size;
:func:`block_crcs` computes it for a whole array at once (the reference the tests compare with).
"""
from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from .schema import CHECK_BLOCK


def is_string_array(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "OUS"


def rows_bytes(arr: np.ndarray) -> bytes | memoryview:
    """The bytes a checksum covers for these rows (see module docstring)."""
    if is_string_array(arr):
        parts = []
        for s in arr.ravel().tolist():
            if isinstance(s, bytes):
                parts.append(s)
            else:
                parts.append(str(s).encode("utf-8"))
            parts.append(b"\0")
        return b"".join(parts)
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
        a = a.astype(a.dtype.newbyteorder("<"))
    return memoryview(a).cast("B")


class BlockCrc:
    """Running per-block CRC32 of rows appended in pieces."""

    def __init__(self, block: int = CHECK_BLOCK):
        self.block = block
        self.done: list[int] = []
        self._crc = 0
        self._rows = 0

    def update(self, arr: np.ndarray) -> None:
        i, n = 0, len(arr)
        while i < n:
            take = min(self.block - self._rows, n - i)
            self._crc = zlib.crc32(rows_bytes(arr[i:i + take]), self._crc)
            self._rows += take
            i += take
            if self._rows == self.block:
                self.done.append(self._crc)
                self._crc, self._rows = 0, 0

    def finish(self) -> np.ndarray:
        """All block checksums, including the last partial block (the object stays usable)."""
        out = list(self.done)
        if self._rows:
            out.append(self._crc)
        return np.asarray(out, dtype=np.uint32)


def block_crcs(arr: np.ndarray, block: int = CHECK_BLOCK) -> np.ndarray:
    """Per-block CRC32 of a whole array (one checksum per ``block`` rows)."""
    return np.asarray([zlib.crc32(rows_bytes(arr[i:i + block])) for i in range(0, len(arr), block)],
                      dtype=np.uint32)


def n_blocks(rows: int, block: int = CHECK_BLOCK) -> int:
    return -(-rows // block)


def file_sha256(path: str | Path, bufsize: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(bufsize)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def fingerprint(shard_sha256: Iterable[str]) -> str:
    """The store fingerprint: sha256 of the shard sha256 hex digests joined by newlines."""
    return hashlib.sha256("\n".join(shard_sha256).encode("ascii")).hexdigest()
