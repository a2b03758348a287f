"""The one place a device name becomes a ``torch.device``: extraction, training, evaluation."""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads lazily: the audio-encoder registry imports this in decode workers
    import torch


class DeviceError(ValueError):
    """A device that does not exist here or is not spelled as torch spells devices."""


def resolve_device(pref: str = "auto", local_rank: int = 0) -> "torch.device":
    """'auto' = ``cuda:<local_rank>`` when CUDA is available, else cpu; a bare 'cuda' also picks
    the local rank's card."""
    import torch

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


def weights_dtype(device: "torch.device", precision: str) -> "torch.dtype":
    """The dtype an encoder's weights are kept in: bfloat16 for ``precision = bf16`` on the CPU,
    float32 otherwise.  Why not autocast there: it turns off the fused attention path and casts
    every weight on every call, which made CLIP slower than float32 (docs/EXTRACTION.md)."""
    import torch

    return torch.bfloat16 if device.type == "cpu" and precision == "bf16" else torch.float32


def autocast_dtype(device: "torch.device", precision: str) -> "torch.dtype | None":
    """The autocast dtype for ``precision`` on ``device`` (None = no autocast: float32 weights, or
    bfloat16 ones on the CPU, :func:`weights_dtype`)."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Autocast:
    """A reusable ``torch.autocast`` factory for one device and dtype (None = no autocast)."""

    def __init__(self, device: "torch.device", dtype: "torch.dtype | None"):
        self.device, self.dtype = device, dtype

    def __call__(self) -> Any:
        import torch

        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @classmethod
    def for_precision(cls, device: "torch.device", precision: str) -> "Autocast":
        return cls(device, autocast_dtype(device, precision))
