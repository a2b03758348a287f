"""Views of the video embeddings, written by every ``eval``: a Poincaré-disk plot and a t-SNE plot.

The embedding of a video is the midpoint, in the tangent space at the origin, of the time-pooled
audio and visual tangent vectors that the alignment loss compares (``SHMamba.video_embedding``).
Each video lives in its own ball (curvature -c_v); scaling its tangent vector by sqrt(c_v) puts
every video in the unit ball (curvature -1), where distances are comparable across videos.

* Poincaré disk: PCA of those unit-ball tangent vectors (the tangent space at 0 is Euclidean, so
  PCA is legitimate there), then expmap0 into the unit disk: radii keep their hyperbolic meaning
  (a point's distance from the origin grows with its tangent norm).
* t-SNE on the pairwise Poincaré distances of the unit-ball points (``metric="precomputed"``).

A Euclidean model has no curvature; its view uses c = k0 for every video (said in the title).
Points are coloured by each video's most frequent answer in the split.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from model.hyperbolic import pairwise_distance

from .curvature import VideoEmbeddings, video_embeddings
from .data import StoreData
from .plots import _pyplot, _save

#: colours for the most frequent labels; the others are grey ("other")
MAX_LABELS = 9


def unit_ball_tangents(emb: VideoEmbeddings, k0: float) -> np.ndarray:
    """sqrt(c_v) * (audio_v + visual_v) / 2: each video's tangent vector in the unit ball."""
    mid = 0.5 * (emb.audio.astype(np.float64) + emb.visual.astype(np.float64))
    c = emb.curvature if emb.curvature is not None else np.full(len(mid), float(k0))
    return mid * np.sqrt(c)[:, None]


def disk_points(w: np.ndarray) -> np.ndarray:
    """Tangent PCA to 2-D, then expmap0 into the unit disk (c = 1): tanh(|p|) p / |p|."""
    from sklearn.decomposition import PCA

    p = PCA(n_components=2, random_state=0).fit_transform(w)
    norm = np.linalg.norm(p, axis=1, keepdims=True).clip(min=1e-12)
    return np.tanh(norm) * p / norm


def tsne_points(w: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """t-SNE (scikit-learn) of the unit-ball Poincaré distances; returns (points, perplexity)."""
    from sklearn.manifold import TSNE

    t = torch.from_numpy(w)
    dist = pairwise_distance(t, t, torch.ones(len(w), dtype=torch.float64)).double().numpy()
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    perplexity = float(min(30.0, max(1.0, (len(w) - 1) / 3)))
    pts = TSNE(n_components=2, metric="precomputed", init="random", perplexity=perplexity,
               random_state=seed).fit_transform(dist)
    return pts, perplexity


def video_labels(question_video: np.ndarray, question_labels: Sequence[str],
                 videos: np.ndarray) -> list[str]:
    """Each video's most frequent non-empty question label (ties: alphabetical), else '?'."""
    per: dict[int, Counter] = {}
    for v, lab in zip(question_video.tolist(), question_labels):
        if lab:
            per.setdefault(int(v), Counter())[lab] += 1
    out = []
    for v in videos.tolist():
        counts = per.get(int(v))
        out.append(min(counts, key=lambda k: (-counts[k], k)) if counts else "?")
    return out


def _scatter(points: np.ndarray, labels: list[str], path: Path, title: str, disk: bool) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    if disk:
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="k", lw=1))
        # a nearly flat ball (small c) keeps every point near the centre: zoom in, and say so
        reach = min(1.05, max(0.05, 1.15 * float(np.linalg.norm(points, axis=1).max())))
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        if reach < 1.05:
            title += f" (zoomed to radius {reach:.2g} of the unit disk)"
    top = [lab for lab, _ in Counter(labels).most_common(MAX_LABELS)]
    lab_arr = np.array(labels)
    other = ~np.isin(lab_arr, top)
    if other.any():
        ax.scatter(*points[other].T, s=12, color="lightgray", label="other")
    for i, lab in enumerate(top):
        ax.scatter(*points[lab_arr == lab].T, s=14, color=plt.cm.tab10(i % 10), label=lab)
    if disk:
        ax.set_aspect("equal")
    ax.legend(fontsize=7, title="most frequent answer", title_fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def embedding_views(model: torch.nn.Module, data: StoreData, split: str,
                    question_labels: Sequence[str], out_dir: str | Path, title: str,
                    batch_size: int = 512, name: str | None = None) -> dict[str, str]:
    """Write ``<name>_poincare.png`` and ``<name>_tsne.png`` (``name`` defaults to the split);
    {} with fewer than 4 videos."""
    name = name or split
    emb = video_embeddings(model, data, split, batch_size)
    if len(emb.video_local) < 4:
        return {}
    k0 = float(getattr(getattr(model, "cfg", None), "k0", 1.0))
    w = unit_ball_tangents(emb, k0)
    labels = video_labels(data.splits[split].video_local, question_labels, emb.video_local)
    curv = "per-video c" if emb.curvature is not None else f"no curvature: c = k0 = {k0:g}"
    out_dir = Path(out_dir)
    disk = _scatter(disk_points(w), labels, out_dir / f"{name}_poincare.png",
                    f"{title}: {len(w)} videos, Poincaré disk\nPCA in the tangent space at 0 "
                    f"(unit ball, {curv}), then expmap0", disk=True)
    pts, perplexity = tsne_points(w)
    tsne = _scatter(pts, labels, out_dir / f"{name}_tsne.png",
                    f"{title}: {len(w)} videos\nt-SNE (scikit-learn, perplexity {perplexity:.0f}) "
                    f"of pairwise Poincaré distances (unit ball, {curv})", disk=False)
    return {"plot_poincare": str(disk), "plot_tsne": str(tsne)}
