"""The per-video curvature over training: a pass over a split's videos, its statistics for
``metrics.jsonl``, and the collapse check.

The pass runs once per epoch after validation, in eval mode (no dropout, so no random draws:
exact resume is kept), outside the training step: the CUDA-graph step stays free of host syncs,
and the results are read back once per split.  It runs only the encoders and the curvature MLP
(``SHMamba.video_embedding``), a small fraction of a forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .data import StoreData

#: a video counts as collapsed when its c is within this fraction of k0 from 0 or from k0
COLLAPSE_BAND = 0.01
#: the log warns when at least this fraction of a split's videos has collapsed
COLLAPSE_FRACTION = 0.9


@dataclass
class VideoEmbeddings:
    """Per distinct video of a split (in ``video_local`` order): the time-pooled tangent vectors
    that the alignment compares and the curvature (None for a Euclidean model)."""

    video_local: np.ndarray       # [V] rows of StoreData.v_rows
    audio: np.ndarray             # [V, d] float32
    visual: np.ndarray            # [V, d] float32
    curvature: np.ndarray | None  # [V] float64


@torch.no_grad()
def video_embeddings(model: torch.nn.Module, data: StoreData, split: str,
                     batch_size: int = 512) -> VideoEmbeddings:
    """Run ``model.video_embedding`` over every distinct video of ``split`` (eval mode)."""
    info = data.splits[split]
    videos, first = np.unique(info.video_local, return_index=True)
    chunks = [first[i:i + batch_size] for i in range(0, len(first), batch_size)]
    was_training = model.training
    model.eval()
    parts: list[tuple] = []
    try:
        for batch in data.batches(split, chunks):
            parts.append(model.video_embedding(batch.audio, batch.visual))
    finally:
        model.train(was_training)
    audio = torch.cat([p[0] for p in parts]).cpu().numpy()
    visual = torch.cat([p[1] for p in parts]).cpu().numpy()
    curv = None if parts[0][2] is None else torch.cat([p[2] for p in parts]).double().cpu().numpy()
    return VideoEmbeddings(videos.astype(np.int64), audio, visual, curv)


def curvature_stats(c: np.ndarray, k0: float) -> dict:
    """mean, std, min, max, 5th/95th percentile of the per-video curvature, the number of videos,
    and ``collapsed``: the fraction within COLLAPSE_BAND * k0 of 0 or of k0."""
    c = np.asarray(c, dtype=np.float64)
    band = COLLAPSE_BAND * float(k0)
    p5, p95 = np.percentile(c, [5, 95])
    return {"mean": float(c.mean()), "std": float(c.std()), "min": float(c.min()),
            "max": float(c.max()), "p5": float(p5), "p95": float(p95), "n": int(c.size),
            "collapsed": float(np.mean((c <= band) | (c >= float(k0) - band)))}


def curvature_record(model: torch.nn.Module, data: StoreData, splits: list[str], k0: float,
                     batch_size: int, adaptive: bool,
                     warn: Callable[[str], None]) -> dict[str, dict] | None:
    """``{split: curvature_stats}`` for each split (None for a model without curvature); calls
    ``warn`` for each split where an adaptive curvature has collapsed."""
    record = {}
    for split in splits:
        emb = video_embeddings(model, data, split, batch_size)
        if emb.curvature is None:
            return None
        stats = record[split] = curvature_stats(emb.curvature, k0)
        if adaptive and stats["collapsed"] >= COLLAPSE_FRACTION:
            warn(f"curvature collapse on {split}: {stats['collapsed']:.0%} of {stats['n']} videos "
                 f"have c within {COLLAPSE_BAND:.0%} of 0 or of k0 = {k0:g} (min {stats['min']:.4g}, "
                 f"max {stats['max']:.4g}); the adaptive curvature no longer varies per video")
    return record
