"""The Mamba block with two interchangeable backends, and the pre-norm residual layer around it.

* ``mamba-ssm``: ``mamba_ssm.Mamba`` (fused CUDA selective scan); needs CUDA and the package.
* ``mambapy``: ``mambapy.mamba.MambaBlock`` (pure PyTorch, parallel scan); runs anywhere.

Both hold the same parameters under the same names and shapes (in_proj, conv1d, x_proj, dt_proj,
A_log, D, out_proj; dt_rank = ceil(d_model / 16)), so a state_dict from one loads into the other;
``MambaMixer`` keeps either as ``self.mixer`` so the keys are identical too.  mamba_ssm is
imported lazily, only when it is chosen.  mambapy's parallel scan pads a sequence to the next
power of two and cuts the result (causal, so exact); tests check T = 60 against the sequential
reference scan.

``backend="auto"`` picks mamba-ssm when CUDA is available and ``import mamba_ssm`` works, else
mambapy.  The choice and its reason are logged (logger ``model.ssm``) and kept on the module.
"""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

BACKENDS = ("mamba-ssm", "mambapy")


@functools.lru_cache(maxsize=1)
def _mamba_ssm_import_error() -> str | None:
    """None if ``mamba_ssm.Mamba`` imports, else the reason it does not."""
    try:
        from mamba_ssm import Mamba  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA extension (OSError, RuntimeError)
        return f"{type(exc).__name__}: {exc}"
    return None


def resolve_backend(requested: str = "auto") -> tuple[str, str]:
    """Which Mamba implementation to use: (backend, reason).

    ``requested`` is "auto", "mamba-ssm" or "mambapy".  Forcing "mamba-ssm" without CUDA or
    without an importable mamba_ssm raises RuntimeError saying which is missing.
    """
    if requested not in ("auto", *BACKENDS):
        raise ValueError(f"unknown Mamba backend {requested!r}; use one of {['auto', *BACKENDS]}")
    if requested == "mambapy":
        return "mambapy", "requested"
    has_cuda = torch.cuda.is_available()
    error = _mamba_ssm_import_error() if has_cuda else None
    if requested == "mamba-ssm":
        if not has_cuda:
            raise RuntimeError("backend 'mamba-ssm' requested but CUDA is not available "
                               "(use backend='mambapy' or 'auto')")
        if error is not None:
            raise RuntimeError(f"backend 'mamba-ssm' requested but mamba_ssm does not import: "
                               f"{error} (install the [gpu] extra, or use backend='mambapy')")
        return "mamba-ssm", "requested"
    if not has_cuda:
        return "mambapy", "auto: CUDA not available"
    if error is not None:
        return "mambapy", f"auto: mamba_ssm not importable ({error})"
    return "mamba-ssm", "auto: CUDA and mamba_ssm available"


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
            from mambapy.mamba import MambaBlock, MambaConfig

            self.mixer = MambaBlock(MambaConfig(d_model=d_model, n_layers=1, d_state=d_state,
                                                expand_factor=expand, d_conv=d_conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "mamba-ssm" and not x.is_cuda:
            raise RuntimeError("MambaMixer: the mamba-ssm backend needs CUDA tensors, got "
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
