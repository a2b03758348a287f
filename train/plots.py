"""Report plots (matplotlib, Agg backend: no display needed).  Each function writes one PNG and
returns its path."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_type_accuracy(report: Mapping[str, Any], path: str | Path,
                       baseline: Mapping[str, Any] | None = None, title: str = "",
                       counts: Mapping[str, int] | None = None) -> Path:
    """Bars of per-type accuracy (and the groups and overall), beside the baseline if given.
    Types without questions are left out; every bar is labelled with its value, so a 0 % bar
    reads "0.0", and ``counts`` (questions per type/group name and "overall") go under the
    names."""
    plt = _pyplot()
    names = [t for t, v in report["types"].items() if v is not None]
    names += [f"[{g}]" for g, v in report.get("groups", {}).items() if v is not None]
    names += ["[overall]"]

    def values(r):
        out = [r["types"].get(t) for t in names if not t.startswith("[")]
        out += [r["groups"].get(g[1:-1]) for g in names if g.startswith("[") and g != "[overall]"]
        out += [r["overall"]]
        return [np.nan if v is None else v for v in out]

    x = np.arange(len(names))
    width = 0.4 if baseline is not None else 0.7
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 4.5))
    bars = ax.bar(x - (width / 2 if baseline is not None else 0), values(report), width,
                  label="model")
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    if baseline is not None:
        ax.bar(x + width / 2, values(baseline), width, label="majority baseline", alpha=0.7)
        ax.legend()
    if counts is not None:
        names = [f"{n} (n={counts.get(n.strip('[]'), 0)})" for n in names]
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "accuracy per question type")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def confusion_matrix(true: Sequence[int], pred: Sequence[int], n: int) -> np.ndarray:
    """Counts [n, n]: row = true class, column = predicted class."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def plot_confusion(true: Sequence[int], pred: Sequence[int], labels: Sequence[str],
                   path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix over the classes that occur (true or predicted)."""
    plt = _pyplot()
    m = confusion_matrix(true, pred, len(labels))
    used = np.flatnonzero(m.sum(0) + m.sum(1))
    if used.size == 0:
        used = np.arange(min(1, len(labels)))
    m = m[np.ix_(used, used)]
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m, dtype=float), where=rows > 0)
    size = max(4, 0.28 * len(used) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [labels[i] for i in used]
    ax.set_xticks(range(len(used)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(used)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = "confusion matrix, row-normalised (each true answer's row sums to 1)"
    ax.set_title(f"{title}: {what}" if title else what, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_curvature(curvature: Sequence[float], path: str | Path, title: str = "") -> Path:
    """Histogram of the per-video curvature c (the ball has curvature -c)."""
    plt = _pyplot()
    c = np.asarray(curvature, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(c, bins=min(50, max(5, c.size // 5)), color="tab:purple", alpha=0.8)
    ax.set_xlabel("curvature c per video")
    ax.set_ylabel("videos")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))   # counts: no fractional ticks
    ax.set_title(title or "adaptive curvature")
    ax.axvline(float(np.mean(c)), color="k", ls="--", lw=1, label=f"mean {np.mean(c):.4g}")
    ax.legend()
    return _save(fig, path)


def plot_training_curves(metrics: Sequence[Mapping[str, Any]], path: str | Path,
                         title: str = "") -> Path:
    """Loss terms, accuracy and learning rate per epoch from ``metrics.jsonl`` rows."""
    plt = _pyplot()
    ep = [m["epoch"] for m in metrics]

    def col(key):
        return [np.nan if m.get(key) is None else m[key] for m in metrics]

    # constrained layout: the learning-rate tick labels do not run into the accuracy panel
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    axes[0].plot(ep, col("train_loss"), "o-", label="train loss")
    axes[0].plot(ep, col("ce"), ".--", label="CE")
    axes[0].plot(ep, col("align"), ".--", label="align")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(ep, col("train_acc"), "o-", label="train")
    axes[1].plot(ep, col("val_overall"), "o-", label="val")
    axes[1].set_title("accuracy (%)")
    best = [m["epoch"] for m in metrics if m.get("best")]
    if best:   # the epoch of the `best` checkpoint: the last one that improved
        axes[1].axvline(best[-1], color="tab:green", ls=":", lw=1.5, label=f"best epoch {best[-1]}")
    axes[1].legend()
    axes[2].plot(ep, col("lr"), "o-")
    axes[2].set_title("learning rate (end of epoch)")
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def plot_curvature_epochs(metrics: Sequence[Mapping[str, Any]], path: str | Path,
                          title: str = "") -> Path | None:
    """The per-video curvature per epoch (``curvature`` of ``metrics.jsonl`` rows): mean, the
    5th-95th percentile band and min/max, one panel per split; None when no row has it."""
    rows = [m for m in metrics if m.get("curvature")]
    if not rows:
        return None
    plt = _pyplot()
    splits = list(dict.fromkeys(s for m in rows for s in m["curvature"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        have = [m for m in rows if split in m["curvature"]]
        ep = [m["epoch"] for m in have]

        def col(key):
            return np.array([m["curvature"][split][key] for m in have], dtype=float)

        ax.fill_between(ep, col("p5"), col("p95"), alpha=0.3, label="5th-95th percentile")
        ax.plot(ep, col("mean"), "o-", label="mean")
        ax.plot(ep, col("min"), ":", color="gray", label="min / max")
        ax.plot(ep, col("max"), ":", color="gray")
        ax.set_title(f"{split} videos")
        ax.set_xlabel("epoch")
        ax.set_ylabel("curvature c")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "per-video curvature over epochs", y=1.03)
    return _save(fig, path)


def plot_ablation(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Grouped bars per variant: overall and group accuracies, mean with +- 1 std over seeds."""
    plt = _pyplot()
    variants = summary["variants"]
    names = list(variants)
    groups = list(dict.fromkeys(g for s in variants.values() for g in s["groups"]))
    keys = ["overall"] + groups
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(names) + 2), 4.5))
    x = np.arange(len(names))
    for i, key in enumerate(keys):
        stats = [variants[n]["overall"] if key == "overall" else variants[n]["groups"].get(key, {})
                 for n in names]
        mean = [np.nan if s.get("mean") is None else s["mean"] for s in stats]
        std = [0.0 if s.get("std") is None else s["std"] for s in stats]
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, mean, width, yerr=std, capsize=2, label=key)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(keys))
    n_seeds = len(summary.get("seeds", []))
    ax.set_title(f"ablation on the {summary.get('split', 'test')} split: mean ± std over "
                 f"{n_seeds} seed(s)")
    return _save(fig, path)
