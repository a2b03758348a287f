"""Temporal blocks over each modality's sequence [N, T, d]: Mamba, Transformer, or none.

``TemporalStack`` is one stack of ``n_layers`` blocks followed by a final LayerNorm (every variant
keeps that norm, so ``none`` removes the blocks and nothing else).  ``TemporalBlocks`` runs the
audio and visual sequences through one shared stack (both modalities in one batch: one pass) or
through one stack each (``per-modality``).

The transformer blocks are ``nn.TransformerEncoderLayer`` (pre-norm, GELU, feed-forward width
``expand * d_model`` so that a layer has about as many weights as a Mamba block) after a fixed
sinusoidal position encoding: unlike the Mamba scan, attention does not see order by itself.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import SHMambaConfig
from .ssm import MambaLayer


def sinusoidal_positions(T: int, d: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[T, d] fixed sine/cosine position encoding (Vaswani et al. 2017)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(T, d, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe.to(dtype)


class TemporalStack(nn.Module):
    """n_layers temporal blocks of one kind + a final LayerNorm: [N, T, d] -> [N, T, d]."""

    def __init__(self, cfg: SHMambaConfig, kind: str, backend: str | None):
        super().__init__()
        self.kind = kind
        d = cfg.d_model
        if kind == "mamba":
            layers = [MambaLayer(d, cfg.d_state, cfg.d_conv, cfg.expand, backend, cfg.dropout)
                      for _ in range(cfg.n_layers)]
        elif kind == "transformer":
            layers = [nn.TransformerEncoderLayer(d, cfg.n_heads, dim_feedforward=cfg.expand * d,
                                                 dropout=cfg.dropout, activation="gelu",
                                                 batch_first=True, norm_first=True)
                      for _ in range(cfg.n_layers)]
        elif kind == "none":
            layers = []
        else:
            raise ValueError(f"TemporalStack: unknown kind {kind!r}")
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "transformer":
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class TemporalBlocks(nn.Module):
    """Audio and visual sequences through shared or per-modality temporal stacks."""

    def __init__(self, cfg: SHMambaConfig, backend: str | None):
        super().__init__()
        self.shared = cfg.mamba_weights == "shared"
        if self.shared:
            self.stack = TemporalStack(cfg, cfg.temporal, backend)
        else:
            self.audio = TemporalStack(cfg, cfg.temporal, backend)
            self.visual = TemporalStack(cfg, cfg.temporal, backend)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a, v [V, T, d] -> a', v' [V, T, d]."""
        if self.shared:
            out = self.stack(torch.cat([a, v], dim=0))
            return out[: a.shape[0]], out[a.shape[0]:]
        return self.audio(a), self.visual(v)
