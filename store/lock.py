"""StoreLock: one process at a time may change a store.

The lock is an advisory ``flock`` on ``feats.h5.lock`` beside the entry file, with the holder's
pid, host and start time written inside so that a refused process can say who holds it.  The
kernel drops a ``flock`` when its process dies, so a lock file left by a killed process (its pid
no longer alive) is simply taken over; :attr:`StoreLock.took_over` then holds the dead holder's
record.  Concurrent shard *writers* do not take this lock; the process that runs an extraction
(and calls ``drop_videos`` / ``rebuild_index``) does.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import StoreError
from .layout import entry_of, lock_file_of


def _read_record(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    if not data.strip():
        return None
    try:
        rec = json.loads(data.decode("utf-8"))
        return rec if isinstance(rec, dict) else {"raw": data.decode("utf-8", "replace")}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"raw": data.decode("utf-8", "replace")}


def describe(record: dict | None) -> str:
    if not record:
        return "an unknown process"
    if "pid" not in record:
        return f"an unknown process ({record.get('raw', '')!r})"
    since = record.get("time")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {record['pid']} on host {record.get('host', '?')} (since {when})"


class StoreLock:
    """Context manager holding the store's lock; ``StoreError`` naming the holder's pid and host
    if another process (or another ``StoreLock`` in this one) holds it."""

    def __init__(self, entry_path: str | os.PathLike):
        self.entry_path = entry_of(entry_path)
        self.path: Path = lock_file_of(self.entry_path)
        self.took_over: dict | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "StoreLock":
        if self._fd is not None:
            raise StoreError(f"{self.path}: this StoreLock is already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_record(fd)
                os.close(fd)
                raise StoreError(f"store {self.entry_path} is locked by {describe(holder)}; "
                                 f"lock file {self.path}") from None
            except BaseException:
                os.close(fd)
                raise
            # The previous holder may have removed the file between our open and flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_record(fd)
        if previous is not None:
            self.took_over = previous   # its holder died without releasing: stale, taken over
        record = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass
