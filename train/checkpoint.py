"""Checkpoints: atomic, safe to load, and self-describing.

Layout inside a run's ``checkpoints/`` folder::

    e0003/model.safetensors   the weights (safetensors: loading runs no code)
    e0003/state.pt            optimizer, scheduler, RNG and loop state (torch.save; read back with
                              torch.load(weights_only=True), so a file can not execute code)
    e0003/meta.json           variant, model config, store identity, dims, epoch, metrics
    last -> e0003             symlinks, replaced atomically (temp link + os.replace)
    best -> e0002

A checkpoint folder is written under a temporary name and renamed into place when complete; the
``last``/``best`` links then switch to it atomically; folders no link points at are removed.  A
crash at any moment leaves the previous ``last`` and ``best`` intact.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from common.files import fsync_dir

from .data import dim_differences

CHECKPOINT_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
LINKS = ("last", "best")

#: meta["dims"] keys that must match between a checkpoint and the store it is used with
DIM_KEYS = ("schema_version", "audio_dim", "visual_dim", "text_dim", "n_options", "n_answers")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, or does not fit the model/store it is used with."""


@dataclass
class Checkpoint:
    """A checkpoint on disk: its folder, metadata and (lazily loaded) training state."""

    path: Path
    meta: dict

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    def load_weights(self, model: torch.nn.Module, strict: bool = True) -> None:
        """Load the safetensors weights into ``model`` (same parameter names and shapes)."""
        try:
            missing, unexpected = load_model(model, str(self.weights_path), strict=False)
        except (RuntimeError, ValueError, SafetensorError, OSError) as exc:
            raise CheckpointError(f"{self.weights_path}: cannot load into "
                                  f"{type(model).__name__}: {exc}") from exc
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"{self.weights_path}: weights do not fit the model (variant "
                f"{self.meta.get('variant')!r}): missing {sorted(missing)[:8]}, "
                f"unexpected {sorted(unexpected)[:8]}")

    def load_state(self, map_location: str | torch.device = "cpu") -> dict:
        """Optimizer/scheduler/RNG/loop state, loaded with ``weights_only=True``."""
        path = self.path / STATE_FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: no training state in this checkpoint")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:   # weights_only refused a non-plain-data object
            raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors "
                                  f"and plain data (weights_only=True; no code from the file is "
                                  f"run): {str(exc).splitlines()[0]}") from None




def _write_file_synced(path: Path, write) -> None:
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` (a relative name) atomically."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def save_checkpoint(ckpt_dir: str | Path, epoch: int, model: torch.nn.Module, state: dict,
                    meta: dict, links: tuple[str, ...] = ("last",)) -> Path:
    """Write checkpoint ``e<epoch>`` of ``model`` (unwrapped, not DDP) into ``ckpt_dir`` and point
    each of ``links`` at it; returns its folder.  ``state`` must hold only tensors and plain
    Python data (it is read back with ``weights_only=True``)."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"e{epoch:04d}"
    final = ckpt_dir / name
    tmp = ckpt_dir / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / WEIGHTS_FILE))
    _write_file_synced(tmp / STATE_FILE, lambda fh: torch.save(state, fh))
    # safetensors creates its file 0600: give it the mode the umask gives the others
    os.chmod(tmp / WEIGHTS_FILE, stat.S_IMODE((tmp / STATE_FILE).stat().st_mode))
    meta = {"format": CHECKPOINT_FORMAT, "epoch": epoch, **meta}
    _write_file_synced(tmp / META_FILE,
                       lambda fh: fh.write(json.dumps(meta, indent=2, sort_keys=True).encode()))
    fsync_dir(tmp)
    if final.exists():
        # left by a crash between writing it and switching the links (or re-saved after resume)
        referenced = {os.readlink(ckpt_dir / l) for l in LINKS if (ckpt_dir / l).is_symlink()}
        if name in referenced:
            old = ckpt_dir / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            shutil.rmtree(final)
            os.replace(tmp, final)
    else:
        os.replace(tmp, final)
    # 'last' switches after the others: a crash in between resumes from the previous 'last'
    # and redoes this epoch, so 'best' can never point past what a resumed run recomputes
    for link in sorted(links, key=lambda l: l == "last"):
        replace_symlink(ckpt_dir / link, name)
    fsync_dir(ckpt_dir)
    prune_checkpoints(ckpt_dir)
    return final


def _pid_gone(name: str) -> bool:
    """``.tmp-e0003-1234`` -> whether process 1234 is gone (the writer was killed)."""
    try:
        os.kill(int(name.rsplit("-", 1)[1]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, IndexError, OSError):
        return False
    return False


def prune_checkpoints(ckpt_dir: str | Path) -> None:
    """Remove checkpoint folders that no link points at, temp folders of this process, and
    ``.tmp-`` folders of a killed one."""
    ckpt_dir = Path(ckpt_dir)
    keep = {os.readlink(ckpt_dir / l) for l in LINKS if (ckpt_dir / l).is_symlink()}
    for entry in ckpt_dir.iterdir():
        if entry.is_symlink() or not entry.is_dir():
            continue
        stale_tmp = (entry.name.startswith((".tmp-", ".old-"))
                     and entry.name.endswith(f"-{os.getpid()}")) \
            or (entry.name.startswith(".tmp-") and _pid_gone(entry.name))
        if (entry.name.startswith("e") and entry.name not in keep) or stale_tmp:
            shutil.rmtree(entry, ignore_errors=True)


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Checkpoint:
    """``which`` = 'best' | 'last' | a checkpoint folder path."""
    run_dir = Path(run_dir)
    if which in LINKS:
        path = run_dir / "checkpoints" / which
    else:
        path = Path(which)
    if not (path / META_FILE).is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected {META_FILE} and {WEIGHTS_FILE}"
                              f"; which = {which!r}, choose 'best', 'last' or a checkpoint folder)")
    path = path.resolve()
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / META_FILE}: unreadable checkpoint metadata: {exc}") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path / META_FILE}: checkpoint format {meta.get('format')!r}, "
                              f"this version reads {CHECKPOINT_FORMAT}")
    return Checkpoint(path, meta)


def check_compatible(meta: dict, *, variant: str | None = None, dims: dict | None = None,
                     where: str = "checkpoint") -> None:
    """Fail with a message naming every variant/dim that differs between ``meta`` and the given
    variant and store dims (``dims`` uses the keys of :data:`DIM_KEYS` plus ``answer_vocab``)."""
    problems: list[str] = []
    if variant is not None and meta.get("variant") != variant:
        problems.append(f"variant: {where} has {meta.get('variant')!r}, requested {variant!r}")
    if dims is not None:
        mine = meta.get("dims", {})
        problems += dim_differences(mine, dims, DIM_KEYS, where, "store")
        if ("answer_vocab" in dims and "answer_vocab" in mine
                and list(dims["answer_vocab"]) != list(mine["answer_vocab"])
                and int(mine.get("n_answers", -1)) == len(dims["answer_vocab"])):
            diff = [i for i, (a, b) in enumerate(zip(mine["answer_vocab"], dims["answer_vocab"]))
                    if a != b]
            problems.append(f"answer_vocab: {where} and store order answers differently "
                            f"(first difference at index {diff[0] if diff else '?'})")
    if problems:
        raise CheckpointError(f"{where} does not match: " + "; ".join(problems))


def tensorize(obj: Any) -> Any:
    """Numpy arrays -> torch tensors, recursively (``torch.load(weights_only=True)`` reads
    tensors, but not numpy objects)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: tensorize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(tensorize(v) for v in obj)
    return obj


def capture_rng(device: torch.device | None = None) -> dict:
    """The torch CPU, numpy and Python RNG states and, for a CUDA ``device``, that device's
    generator (only it: touching the others would create a context on every card), as
    checkpointable data."""
    import random

    import numpy as np

    np_state = np.random.get_state(legacy=False)
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)]
        if device is not None and device.type == "cuda" else [],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype("int64")),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def restore_rng(state: dict, device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng` (the CUDA state goes to ``device``, if both exist)."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    if state.get("cuda") and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype("uint32"), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
