"""The one place a device name becomes a ``torch.device``: extraction, training, evaluation; and
the precision extraction's encoders run at there (:func:`resolve_precision`)."""
from __future__ import annotations

import sys
from contextlib import nullcontext
from functools import lru_cache
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


#: where Linux lists the CPU's flags (a module constant so that a test can point it elsewhere)
CPUINFO = "/proc/cpuinfo"
#: CPU flags that mean native bfloat16 arithmetic (AVX-512 BF16, AMX BF16)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def bf16_in_cpu_flags(cpuinfo_text: str) -> bool:
    """Whether a ``/proc/cpuinfo`` text lists a native-bf16 flag (:data:`BF16_FLAGS`) on a
    ``flags`` line."""
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags" and BF16_FLAGS & set(value.split()):
            return True
    return False


@lru_cache(maxsize=None)
def _native_bf16(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return bf16_in_cpu_flags(f.read())
    except OSError:
        return False


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively: Linux, with ``avx512_bf16`` or
    ``amx_bf16`` among the flags of :data:`CPUINFO`; False on other systems or when the file
    cannot be read.  Read once per path (cached)."""
    if not sys.platform.startswith("linux"):
        return False
    return _native_bf16(CPUINFO)


def resolve_precision(device: "torch.device", precision: str) -> str:
    """The precision encoders run at on ``device`` for a ``precision`` setting: 'fp32', 'bf16'
    or 'fp16'.  'auto' is bf16 (fp16 where bf16 is unsupported) under autocast on CUDA, and on
    the CPU bf16 weights where the CPU has native bf16 (:func:`cpu_has_native_bf16`), else
    float32; fp16 is CUDA-only (float32 on the CPU).  The one place extraction's precision is
    decided: :func:`weights_dtype`, :func:`autocast_dtype` and the store's
    ``compute_precision`` follow it."""
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        if precision in ("fp16", "bf16"):
            return precision
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16" or (precision == "auto" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def weights_dtype(device: "torch.device", precision: str) -> "torch.dtype":
    """The dtype an encoder's weights are kept in: bfloat16 where ``precision`` resolves to bf16
    on the CPU (:func:`resolve_precision`), float32 otherwise.  Why not autocast there: it turns
    off the fused attention path and casts every weight on every call, which made CLIP slower
    than float32 (docs/EXTRACTION.md)."""
    import torch

    cpu_bf16 = device.type == "cpu" and resolve_precision(device, precision) == "bf16"
    return torch.bfloat16 if cpu_bf16 else torch.float32


def autocast_dtype(device: "torch.device", precision: str) -> "torch.dtype | None":
    """The autocast dtype for ``precision`` on ``device`` (None = no autocast: float32 weights, or
    bfloat16 ones on the CPU, :func:`weights_dtype`)."""
    import torch

    if device.type != "cuda":
        return None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[
        resolve_precision(device, precision)]


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
