"""Optimizers and the learning-rate schedule: AdamW (fused on CUDA) for Euclidean parameters,
geoopt's RiemannianAdam for manifold parameters, linear warm-up then cosine/linear decay."""
from __future__ import annotations

import math
import warnings

import torch

with warnings.catch_warnings():   # geoopt scripts its math; torch calls torch.jit.script deprecated
    warnings.filterwarnings("ignore", r".*torch\.jit\.script.*deprecated", FutureWarning)
    import geoopt

from .config import TrainConfig


def param_groups(params: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """Decay only matrices; never biases, norms, 1-d parameters or those marked
    ``_no_weight_decay`` (Mamba's ``A_log`` and ``D``)."""
    decay, no_decay = [], []
    for name, p in params:
        if p.ndim < 2 or getattr(p, "_no_weight_decay", False):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizers(model: torch.nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for Euclidean parameters; geoopt RiemannianAdam for ``ManifoldParameter``s."""
    euclid, manifold = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (manifold if isinstance(p, geoopt.ManifoldParameter) else euclid).append((name, p))
    opts: list[torch.optim.Optimizer] = []
    if euclid:
        fused = all(p.is_cuda for _, p in euclid)  # one kernel per step on CUDA
        opts.append(torch.optim.AdamW(param_groups(euclid, cfg.weight_decay), lr=cfg.lr,
                                      betas=(0.9, 0.999), eps=1e-8, fused=fused or None))
    if manifold:
        opts.append(geoopt.optim.RiemannianAdam([p for _, p in manifold], lr=cfg.lr,
                                                stabilize=10))
    if not opts:
        raise ValueError("the model has no trainable parameters")
    return opts


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base LR after ``step`` optimizer steps: linear warm-up over ``warmup``
    steps, then cosine / linear decay to ``min_ratio`` at ``total`` (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return min_ratio + (1 - min_ratio) * (1 - progress)


def make_schedulers(opts: list[torch.optim.Optimizer], cfg: TrainConfig,
                    total_steps: int) -> tuple[list[torch.optim.lr_scheduler.LambdaLR], int]:
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else int(round(cfg.warmup_ratio * total_steps))
    fn = lambda step: lr_factor(step, warmup, total_steps, cfg.schedule, cfg.min_lr_ratio)  # noqa: E731
    return [torch.optim.lr_scheduler.LambdaLR(o, fn) for o in opts], warmup
