"""Small h5py helpers shared by the writer, reader, index and verifier."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .errors import StoreError

#: variable-length UTF-8 strings
STR_DTYPE = h5py.string_dtype("utf-8")

#: target bytes per chunk; rows per chunk = clamp(CHUNK_BYTES // row_bytes, 1, MAX_CHUNK_ROWS)
CHUNK_BYTES = 1 << 20
MAX_CHUNK_ROWS = 512


def chunk_rows(row_shape: tuple[int, ...], itemsize: int) -> int:
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * itemsize)
    return int(min(MAX_CHUNK_ROWS, max(1, CHUNK_BYTES // row_bytes)))


def numpy_dtype(dtype: str):
    """The h5py dtype for a schema dtype name (``'str'`` -> UTF-8 vlen string)."""
    return STR_DTYPE if dtype == "str" else np.dtype(dtype)


def to_str_array(values) -> np.ndarray:
    """Object/bytes/str array or list -> numpy unicode array (same shape)."""
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="<U1")
    flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.ravel().tolist()]
    return np.asarray(flat, dtype=str).reshape(arr.shape)


def read_str(ds, sel=()) -> np.ndarray:
    """Read (part of) a string dataset as a numpy unicode array."""
    return to_str_array(ds.asstr()[sel])


def open_h5(path: str | os.PathLike, what: str = "file") -> h5py.File:
    """Open an HDF5 file read-only; ``StoreError`` naming it if missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{what} {path} does not exist")
    if path.is_dir():   # e.g. the shard folder given for the entry file
        entry = path.name[:-len(".shards")] + ".h5" if path.name.endswith(".shards") else "feats.h5"
        raise StoreError(f"{what} {path} is a folder, not a file; a store is named by its entry "
                         f"file: {path.parent / entry}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{what} {path} cannot be read as HDF5 (truncated or corrupt?): {exc}") from None


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated) and fsync it."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def memory_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """A new HDF5 file built in memory (``core`` driver, no backing store) and written to
    ``path`` (fsynced) with plain writes when the block ends without an exception.

    HDF5 then never meets a failed write: a full disk is an ordinary ``OSError`` from this
    function.  (A write that fails inside HDF5 can leave its caches in a state that crashes the
    process later, with SIGSEGV.)"""
    f = h5py.File(path, "w", driver="core", backing_store=False)
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    write_synced(path, image)
