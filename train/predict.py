"""Predictions for every question of a split: the code that validation (in training), ``eval``
and the benchmarks share.

On CUDA with resident data the forward pass of a static batch is captured in a CUDA graph once
per split (:class:`GraphForward`) and replayed batch after batch; elsewhere (CPU, DDP, streamed
data) it runs eagerly.  Both give the same predictions (tests/gpu/test_gpu_step.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .data import StoreData
from .distributed import DistContext, all_gather_cat, rank_slice
from .step import (StaticShape, forward, gather_static, graph_autocast, graphs_possible,
                   pack_plans, plans_shape)


@dataclass
class Predictions:
    """Predicted class (answer index, or option index for multiple choice) per question of a
    split, in the split's order, and each referenced video's curvature (NaN where the model has
    none)."""

    pred: np.ndarray         # [N] int64
    video_local: np.ndarray  # [Vs] rows of StoreData.v_rows seen
    curvature: np.ndarray    # [Vs] float64


class GraphForward:
    """The eval-mode forward of one split at one static batch size, captured in a CUDA graph.
    Returns static outputs (argmax [size], curvature [size]): copy what you keep before the
    next call."""

    def __init__(self, model: torch.nn.Module, data: StoreData, split: str, shape: StaticShape,
                 autocast: Callable):
        self.model, self.data, self.split, self.autocast = model, data, split, autocast
        self.shape = shape
        self.plan = torch.zeros(shape.width, dtype=torch.int64, device=data.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, torch.Tensor] | None = None

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch, video_mask = gather_static(self.data, self.split, self.plan, self.shape)
        with self.autocast():
            out = forward(self.model, batch, video_mask)
        curv = out.curvature.float() if out.curvature is not None \
            else torch.full(video_mask.shape, float("nan"), device=video_mask.device)
        return out.logits.float().argmax(-1), curv

    @torch.no_grad()
    def __call__(self, plan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.plan.copy_(plan, non_blocking=True)
        if self.graph is None:
            stream = torch.cuda.Stream(self.data.device)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._forward()  # warm-up: lazy initialisation happens outside the capture
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=stream):
                    self.out = self._forward()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = graph
        self.graph.replay()
        return self.out


class Predictor:
    """``Predictor(model, data, batch_size)(split) -> Predictions``; keeps its CUDA graphs (one
    per split) between calls, so validating every epoch captures once."""

    def __init__(self, model: torch.nn.Module, data: StoreData, batch_size: int, amp: str = "auto",
                 ctx: DistContext | None = None, graphs: bool | None = None):
        self.model, self.data, self.batch_size, self.amp, self.ctx = model, data, batch_size, amp, ctx
        self.graphs = graphs_possible(data, ctx)[0] if graphs is None else graphs
        self._runners: dict[str, GraphForward] = {}

    @torch.no_grad()
    def __call__(self, split: str) -> Predictions:
        n = len(self.data.splits[split])
        positions = torch.arange(n)
        if self.ctx is not None and self.ctx.distributed:
            positions = positions[rank_slice(n, self.ctx)]
        batches = [b.numpy() for b in torch.split(positions, self.batch_size)]
        was_training = self.model.training
        self.model.eval()
        try:
            pred, vid, curv = (self._graphed if self.graphs else self._eager)(split, batches)
        finally:
            self.model.train(was_training)
        if self.ctx is not None and self.ctx.distributed:
            pred, vid, curv = (all_gather_cat(t, self.ctx) for t in (pred, vid, curv))
        vid_np = vid.cpu().numpy()
        uniq, first = np.unique(vid_np, return_index=True)
        return Predictions(pred.cpu().numpy().astype(np.int64), uniq,
                           curv.double().cpu().numpy()[first])

    def _eager(self, split: str, batches: list[np.ndarray]):
        autocast = graph_autocast(self.data.device, self.amp)
        preds, vids, curvs = [], [], []
        for batch in self.data.batches(split, batches):
            with autocast():
                out = forward(self.model, batch)
            preds.append(out.logits.float().argmax(-1))
            vids.append(batch.videos)
            curvs.append(out.curvature.float().reshape(-1) if out.curvature is not None
                         else torch.full((len(batch.videos),), float("nan"), device=self.data.device))
        return _cat(preds, self.data.device, torch.long), _cat(vids, self.data.device, torch.long), \
            _cat(curvs, self.data.device, torch.float32)

    def _graphed(self, split: str, batches: list[np.ndarray]):
        plans_np = [self.data.plan(split, b) for b in batches]
        shape = plans_shape(plans_np, max(len(b) for b in batches))
        runner = self._runners.get(split)
        if runner is None or runner.shape.questions != shape.questions \
                or runner.shape.videos < shape.videos:
            runner = self._runners[split] = GraphForward(
                self.model, self.data, split, shape, graph_autocast(self.data.device, self.amp))
        plans = torch.from_numpy(pack_plans(plans_np, runner.shape)).to(self.data.device)
        start = 3 * runner.shape.questions
        preds, vids, curvs = [], [], []
        for i, p in enumerate(plans_np):
            n_v = len(p["videos"])
            pred, curv = runner(plans[i])
            preds.append(pred[:len(p["index"])].clone())
            curvs.append(curv[:n_v].clone())
            vids.append(plans[i, start:start + n_v])
        return _cat(preds, self.data.device, torch.long), _cat(vids, self.data.device, torch.long), \
            _cat(curvs, self.data.device, torch.float32)


def _cat(parts: list[torch.Tensor], device, dtype) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=device)


def predict(model: torch.nn.Module, data: StoreData, split: str, batch_size: int,
            amp: str = "auto", ctx: DistContext | None = None) -> Predictions:
    """Argmax predictions for every question of ``split`` (sharded over ranks, gathered on all)."""
    return Predictor(model, data, batch_size, amp, ctx)(split)


def prediction_map(pred: Predictions, data: StoreData, split: str) -> dict[int, int | str]:
    """question id -> answer string (or option index for multiple choice), for the scorer."""
    info = data.splits[split]
    vocab = list(data.store.attrs["answer_vocab"])
    if data.with_options:
        return {int(q): int(p) for q, p in zip(info.question_ids, pred.pred)}
    return {int(q): vocab[int(p)] for q, p in zip(info.question_ids, pred.pred)}
