"""The Mamba block with three interchangeable backends, and the pre-norm residual layer around it.

* ``triton``: our block (:class:`TritonMambaBlock`): the projections in PyTorch, the causal
  depthwise convolution + SiLU and the selective scan as Triton kernels (:mod:`model.scan`);
  CUDA only.
* ``mamba-ssm``: ``mamba_ssm.Mamba`` (fused CUDA selective scan); needs CUDA and the package.
* ``mambapy``: ``mambapy.mamba.MambaBlock`` (pure PyTorch, parallel scan); runs anywhere.

All hold the same parameters under the same names and shapes (in_proj, conv1d, x_proj, dt_proj,
A_log, D, out_proj), so a state_dict from one loads into another.  ``backend="auto"`` picks
triton, then mamba-ssm, on CUDA, and mambapy elsewhere; the choice and its reason are logged.
"""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from mambapy.mamba import MambaBlock, MambaConfig

from . import scan
from .config import ModelConfigError

log = logging.getLogger(__name__)

BACKENDS = ("triton", "mamba-ssm", "mambapy")


class BackendUnavailable(RuntimeError):
    """A forced Mamba backend cannot run on this machine; the message says what is missing."""


@functools.lru_cache(maxsize=1)
def _mamba_ssm_import_error() -> str | None:
    """None if ``mamba_ssm.Mamba`` imports, else the reason it does not."""
    try:
        from mamba_ssm import Mamba  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA extension (OSError, RuntimeError)
        return f"{type(exc).__name__}: {exc}"
    return None


def resolve_backend(requested: str = "auto", d_state: int = 16, d_conv: int = 4) -> tuple[str, str]:
    """Which Mamba implementation to use: (backend, reason).

    ``requested`` is "auto", "triton", "mamba-ssm" or "mambapy".  Forcing a CUDA backend where it
    cannot run raises :class:`BackendUnavailable` (a RuntimeError) saying what is missing.
    """
    if requested not in ("auto", *BACKENDS):
        raise ModelConfigError(f"unknown Mamba backend {requested!r}; use one of {['auto', *BACKENDS]}")
    if requested == "mambapy":
        return "mambapy", "requested"
    has_cuda = torch.cuda.is_available()
    if requested in ("triton", "mamba-ssm") and not has_cuda:
        raise BackendUnavailable(f"backend {requested!r} requested but CUDA is not available")
    pow2 = all(v > 0 and v & (v - 1) == 0 for v in (d_state, d_conv))  # Triton block widths
    no_triton = None if scan.available() and pow2 else "triton is not installed" \
        if not scan.available() else f"d_state = {d_state} or d_conv = {d_conv} is not a power of two"
    if requested == "triton":
        if no_triton is not None:
            raise BackendUnavailable(f"backend 'triton' requested but {no_triton}")
        return "triton", "requested"
    error = _mamba_ssm_import_error() if has_cuda else None
    if requested == "mamba-ssm":
        if error is not None:
            raise BackendUnavailable(f"backend 'mamba-ssm' requested but mamba_ssm does not import: "
                               f"{error} (install the [gpu] extra)")
        return "mamba-ssm", "requested"
    if not has_cuda:
        return "mambapy", "auto: CUDA not available"
    if no_triton is None:
        return "triton", "auto: CUDA and triton available"
    if error is not None:
        return "mambapy", f"auto: no triton scan ({no_triton}) and mamba_ssm not importable ({error})"
    return "mamba-ssm", f"auto: CUDA and mamba_ssm available (no triton scan: {no_triton})"

class TritonMambaBlock(MambaBlock):
    """mambapy's block (its parameters and initialisation) with a channels-last forward whose
    causal convolution + SiLU and selective scan are the Triton kernels of :mod:`model.scan`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        xi, z = self.in_proj(x).chunk(2, dim=-1)
        xc = scan.causal_conv_silu(xi, self.conv1d.weight, self.conv1d.bias)
        delta, B, C = torch.split(self.x_proj(xc), [cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        delta = F.linear(delta, self.dt_proj.weight)
        y = scan.selective_scan(xc, delta, -torch.exp(self.A_log.float()), B, C, self.D.float(), z,
                                self.dt_proj.bias.float())
        return self.out_proj(y)


class MambaMixer(nn.Module):
    """One Mamba block [N, T, d] -> [N, T, d], no norm or residual, on the chosen backend."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 backend: str = "mambapy"):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"MambaMixer: backend must be one of {BACKENDS} (resolve 'auto' with "
                             f"resolve_backend first), got {backend!r}")
        self.backend = backend
        if backend == "mamba-ssm":
            from mamba_ssm import Mamba

            self.mixer = Mamba(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand)
        else:
            block = TritonMambaBlock if backend == "triton" else MambaBlock
            self.mixer = block(MambaConfig(d_model=d_model, n_layers=1, d_state=d_state,
                                           expand_factor=expand, d_conv=d_conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend in ("mamba-ssm", "triton") and not x.is_cuda:
            raise RuntimeError(f"MambaMixer: the {self.backend} backend needs CUDA tensors, got "
                               f"{x.device}; build the model with backend='mambapy' for CPU")
        return self.mixer(x)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


class MambaLayer(nn.Module):
    """Pre-norm residual Mamba layer: x + dropout(mixer(RMSNorm(x)))."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, backend: str,
                 dropout: float = 0.0):
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.mixer = MambaMixer(d_model, d_state, d_conv, expand, backend)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.mixer(self.norm(x)))
