"""Audio-visual fusion, split into a per-video part and a per-question part.

Everything that does not depend on the question runs once per video (``per_video``); only the
question-guided pooling runs per question (``per_question``), on the per-video results gathered
with ``video_index``.  MUSIC-AVQA has ~4.9 questions per video, so this saves most of the work.

* ``CrossFusion`` (SHMamba's cross fusion block):
  1. gates from the other modality: a' = a * sigmoid(W_v v), v' = v * sigmoid(W_a a);
  2. temporal convolution (Conv1d over time, ``kernel`` wide) over the concatenated [a' ; v'],
     GELU, added to a' + v', LayerNorm: the fused sequence f [V, T, d];
  3. question-guided attention pooling over time: the question is the query, f the keys/values.
* ``ConcatFusion`` (ablation): MLP over [a ; v] per time step, mean over time (no question).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class AttentionPool(nn.Module):
    """Multi-head attention of one query vector per row over a sequence.

    Keys and values are projected once per sequence (``keys_values``); queries [B, d] attend over
    the sequences picked by ``index`` [B] (None: row b uses sequence b).
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        # no key bias: it adds q.b_k to every score of a query, which the softmax cancels (a
        # parameter with zero gradient)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def keys_values(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """seq [N, T, d] -> keys, values [N, T, heads, d/heads]."""
        N, T, d = seq.shape
        shape = (N, T, self.n_heads, d // self.n_heads)
        return self.k_proj(seq).view(shape), self.v_proj(seq).view(shape)

    def forward(self, query: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor],
                index: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """query [B, d]; kv from ``keys_values``; mask [B, T] bool (True = attend).

        Returns pooled [B, d] and the attention weights [B, heads, T].  A row whose mask is all
        False gets uniform weights (not NaN).
        """
        k, v = kv
        if index is not None:
            k, v = k[index], v[index]
        B, T, h, dh = k.shape
        q = self.q_proj(query).view(B, h, dh)
        scores = torch.einsum("bhd,bthd->bht", q, k) / math.sqrt(dh)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        pooled = torch.einsum("bht,bthd->bhd", weights, v).reshape(B, h * dh)
        return self.out_proj(pooled), weights


class CrossFusion(nn.Module):
    """Gated cross-modal fusion + temporal convolution + question-guided pooling."""

    def __init__(self, d_model: int, n_heads: int, kernel: int = 3):
        super().__init__()
        self.gate_from_visual = nn.Linear(d_model, d_model)  # gates the audio
        self.gate_from_audio = nn.Linear(d_model, d_model)   # gates the visual
        self.conv = nn.Conv1d(2 * d_model, d_model, kernel_size=kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(d_model)
        self.pool = AttentionPool(d_model, n_heads)

    def fused_sequence(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """a, v [V, T, d] -> fused f [V, T, d]."""
        a_g = a * torch.sigmoid(self.gate_from_visual(v))
        v_g = v * torch.sigmoid(self.gate_from_audio(a))
        conv = self.conv(torch.cat([a_g, v_g], dim=-1).transpose(1, 2)).transpose(1, 2)
        return self.norm(a_g + v_g + F.gelu(conv))

    def per_video(self, a: torch.Tensor, v: torch.Tensor):
        return self.pool.keys_values(self.fused_sequence(a, v))

    def per_question(self, state, question: torch.Tensor, index: torch.Tensor | None):
        """-> pooled [B, d], attention weights [B, heads, T]."""
        return self.pool(question, state, index)


class ConcatFusion(nn.Module):
    """Ablation: MLP over [a ; v] per time step, then the mean over time (question-independent)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def per_video(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([a, v], dim=-1)).mean(dim=1)  # [V, d]

    def per_question(self, state: torch.Tensor, question: torch.Tensor, index: torch.Tensor | None):
        return (state if index is None else state[index]), None
