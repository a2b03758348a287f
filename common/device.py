"""The one place a device name becomes a ``torch.device``: extraction, training, evaluation."""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that does not exist here or is not spelled as torch spells devices."""


def resolve_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' = ``cuda:<local_rank>`` when CUDA is available, else cpu; a bare 'cuda' also picks
    the local rank's card."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(pref)
    except RuntimeError:
        raise DeviceError(f"unknown device {pref!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {pref!r} is not supported: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {pref!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev
