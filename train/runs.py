"""Run directories: ``<out>/<name or timestamp>/`` with ``config.json`` (the exact resolved
config), ``store.json`` (the store's identity), ``metrics.jsonl`` (one JSON object per epoch),
``checkpoints/`` and ``train.log``; ``<out>/latest`` is a symlink to the newest run, replaced
atomically.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from common.files import atomic_write

from .checkpoint import replace_symlink

CONFIG_FILE = "config.json"
STORE_FILE = "store.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
LATEST = "latest"


class RunError(RuntimeError):
    """A run directory is missing, incomplete, or would be overwritten."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``hint`` says how to go on from what the run directory holds."""

    def __init__(self, run_dir: str | Path):
        super().__init__(str(run_dir))
        self.run_dir = Path(run_dir)

    @property
    def hint(self) -> str:
        if (self.run_dir / CONFIG_FILE).is_file() and (self.run_dir / STORE_FILE).is_file():
            return f"interrupted: continue with  python cli.py train --resume {self.run_dir}"
        return (f"interrupted before run {self.run_dir} had saved its config; nothing to resume, "
                "start the run again")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON: {exc}") from exc


def new_run_dir(out: str | Path, name: str = "") -> Path:
    """Create and return a fresh run directory under ``out``.  A given ``name`` that already
    exists is an error (use ``--resume`` to continue it); timestamps get a suffix if taken."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if name:
        path = out / name
        try:
            path.mkdir()
        except FileExistsError:
            if path.is_dir() and {p.name for p in path.iterdir()} <= {LOG_FILE}:
                return path   # left by a run killed before it wrote its config: start it again
            raise RunError(f"run directory {path} already exists; pass --resume {path} to "
                           "continue it or choose another --name") from None
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = out / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"cannot create a run directory under {out}")


def set_latest(run_dir: str | Path) -> None:
    """Point ``<out>/latest`` at ``run_dir`` (atomically)."""
    run_dir = Path(run_dir)
    replace_symlink(run_dir.parent / LATEST, run_dir.name)


def resolve_run_dir(path: str | Path | None = None, out: str | Path = "runs") -> Path:
    """A run directory from: None (``<out>/latest``), a run directory, a ``latest`` link, or an
    ``out`` folder that holds a ``latest`` link.  Returns the real path."""
    p = Path(out) / LATEST if path is None else Path(path)
    if p.is_dir() and not (p / CONFIG_FILE).is_file() and (p / LATEST).exists():
        p = p / LATEST
    if not p.exists():
        hint = " (no run yet? train one first)" if path is None else ""
        raise RunError(f"run directory {p} does not exist{hint}")
    p = p.resolve()
    if not (p / CONFIG_FILE).is_file():
        raise RunError(f"{p} is not a run directory (no {CONFIG_FILE})")
    return p


def append_metrics(run_dir: str | Path, row: dict) -> None:
    """Append one JSON object (one epoch) to ``metrics.jsonl``, flushed to disk."""
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All rows of ``metrics.jsonl`` (an unterminated last line from a crash is ignored)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def truncate_metrics(run_dir: str | Path, last_epoch: int) -> None:
    """Keep only rows with ``epoch <= last_epoch`` (used when resuming from a checkpoint that
    is older than the metrics file)."""
    rows = [r for r in read_metrics(run_dir) if int(r.get("epoch", 0)) <= last_epoch]
    atomic_write(Path(run_dir) / METRICS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def run_logger(run_dir: str | Path | None, name: str = "train") -> logging.Logger:
    """A logger that appends to ``<run_dir>/train.log`` (or only propagates when None)."""
    logger = logging.getLogger(f"shmamba.{name}.{run_dir}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    if run_dir is not None:
        handler = logging.FileHandler(Path(run_dir) / LOG_FILE, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    return logger


def close_logger(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
