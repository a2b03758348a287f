"""One training step, two ways, the same arithmetic.

* :class:`EagerStep` is the reference: a :class:`~train.data.Batch` through forward, loss,
  backward, grad clipping, the optimizers and the LR schedule.  Any device, DDP, streamed data.
* :class:`GraphStep` captures forward, loss, backward and clipping of a *static-shape* batch in a
  CUDA graph and replays it; the fused AdamW step and the schedule run after each replay.  With
  ``compile`` the model inside the graph is ``torch.compile``-d (half the kernels per step).  A
  batch is padded to ``batch_size`` questions and to the most distinct videos of any batch of
  the epoch, rounded up to 8 (:func:`plans_shape`, :func:`pack_plans`);
  padded questions have no answer and padded videos are masked out of the alignment loss, so the
  step computes what the eager step computes on the unpadded batch.  Single process, CUDA,
  resident data.  The first ``warmup`` steps run eagerly (real steps, as the reference does),
  then the graph is captured once.  tests/gpu/test_gpu_step.py checks both give the same losses
  and weights.

Both keep running sums on the device, so a step never waits for the GPU:
``acc = [CE sum, answered questions, correct answers, alignment loss * videos]``.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import Batch, StoreData
from .distributed import DistContext


@dataclass
class StepSettings:
    """What a step needs from the training config."""

    align_weight: float
    grad_clip: float
    label_smoothing: float


def forward(model: torch.nn.Module, batch: Batch, video_mask: torch.Tensor | None = None):
    """The model call for one :class:`~train.data.Batch`."""
    return model(batch.audio, batch.visual, batch.sentence, tokens=batch.tokens,
                 token_mask=batch.token_mask, video_index=batch.video_index,
                 options=batch.options, video_mask=video_mask)


def loss_and_metrics(out, answer: torch.Tensor, n_videos: torch.Tensor | float,
                     scales: torch.Tensor, s: StepSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to minimise, running-sum increment [4] float64).  ``scales`` = [CE scale,
    alignment scale] (DDP normalisation; 1/answered and 1 in one process)."""
    logits = out.logits.float()
    ce_sum = F.cross_entropy(logits, answer, ignore_index=-1, reduction="sum",
                             label_smoothing=s.label_smoothing)
    align = out.align_loss.float() if out.align_loss is not None else logits.new_zeros(())
    loss = ce_sum * scales[0] + s.align_weight * align * scales[1]
    with torch.no_grad():
        valid = answer >= 0
        metrics = torch.stack([ce_sum.detach().double(), valid.sum().double(),
                               (logits.argmax(-1).eq(answer) & valid).sum().double(),
                               align.detach().double() * n_videos])
    return loss, metrics


def clip_gradients(model: torch.nn.Module, max_norm: float) -> None:
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


class EagerStep:
    """The reference step on a :class:`Batch`."""

    def __init__(self, model, train_model, optimizers, schedulers, settings: StepSettings,
                 autocast: Callable, device: torch.device):
        self.model, self.train_model = model, train_model
        self.optimizers, self.schedulers, self.s, self.autocast = optimizers, schedulers, settings, autocast
        self.acc = torch.zeros(4, dtype=torch.float64, device=device)

    def __call__(self, batch: Batch, ce_scale: float, align_scale: float) -> None:
        scales = torch.tensor([ce_scale, align_scale], dtype=torch.float32)
        with self.autocast():
            out = forward(self.train_model, batch)
        loss, metrics = loss_and_metrics(out, batch.answer, float(batch.audio.shape[0]), scales, self.s)
        loss.backward()
        clip_gradients(self.model, self.s.grad_clip)
        step_optimizers(self.optimizers, self.schedulers)
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        self.acc += metrics


def step_optimizers(optimizers, schedulers) -> None:
    for o in optimizers:
        o.step()
    for s in schedulers:
        s.step()


# ---- static-shape plans ------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticShape:
    """A padded batch: ``questions`` question slots and ``videos`` video slots."""

    questions: int
    videos: int

    @property
    def width(self) -> int:
        return 3 * self.questions + 2 * self.videos


def plans_shape(plans: Sequence[dict], questions: int, multiple: int = 8) -> StaticShape:
    """The smallest shape of ``questions`` question slots that holds every plan's distinct
    videos (rounded up to ``multiple``, at most ``questions``)."""
    most = max((len(p["videos"]) for p in plans), default=1)
    return StaticShape(questions, min(questions, -(-most // multiple) * multiple))


def pack_plans(plans: Sequence[dict], shape: StaticShape) -> np.ndarray:
    """[n, shape.width] int64: per batch (``StoreData.plan``) the question rows (positions,
    video index, valid) then the video rows (distinct videos, valid), padded with the first
    question / video, marked invalid."""
    B, V = shape.questions, shape.videos
    out = np.zeros((len(plans), shape.width), dtype=np.int64)
    for i, plan in enumerate(plans):
        n_q, n_v = len(plan["index"]), len(plan["videos"])
        if n_q > B or n_v > V:
            raise ValueError(f"a batch of {n_q} questions and {n_v} videos does not fit {shape}")
        q, v = out[i, :3 * B].reshape(3, B), out[i, 3 * B:].reshape(2, V)
        q[0, :n_q], q[0, n_q:] = plan["index"], plan["index"][0]
        q[1, :n_q], q[2, :n_q] = plan["video_index"], 1
        v[0, :n_v], v[0, n_v:] = plan["videos"], plan["videos"][0]
        v[1, :n_v] = 1
    return out


def gather_static(data: StoreData, split: str, plan: torch.Tensor,
                  shape: StaticShape) -> tuple[Batch, torch.Tensor]:
    """The padded batch of one device plan row (device gathers only) and its video mask."""
    B = shape.questions
    q, v = plan[:3 * B].view(3, B), plan[3 * B:].view(2, shape.videos)
    batch = data.gather(split, q[0], v[0], q[1])
    batch.answer = torch.where(q[2].bool(), batch.answer, torch.full_like(batch.answer, -1))
    return batch, v[1].bool()


#: inductor options of the compiled step: no mix-order reductions, which corrupted gradients
#: silently in pytorch/pytorch#190796 and #193061 (with them on, run e's whole bf16 model was
#: wrong from the first call; off, from the third)
COMPILE_OPTIONS = {"triton.mix_order_reduction": False}

#: what ``compile = "regions"`` compiles one by one: children, or ``child.method`` where the model
#: calls a child through its methods (each agrees with eager under bf16 on its own, where the
#: whole compiled model does not: docs/TRAINING.md)
COMPILE_REGIONS = ("audio_enc", "visual_enc", "question_enc", "align", "temporal",
                   "fusion.per_video", "fusion.per_question", "head")


#: the fewest steps a run must have for compile = "auto" to compile: with inductor's disk cache
#: warm, compiling costs ~3 s and saves ~1.2 ms per batch-64 step (H200, run f)
AUTO_COMPILE_STEPS = 2500


def resolve_compile(compile: bool | str, total_steps: int) -> bool | str:
    """TrainConfig.compile as the CUDA-graph step runs it: "auto" -> "regions" for runs long
    enough to gain from compiling, False for shorter ones (the demo, tests)."""
    if compile == "auto":
        return "regions" if total_steps >= AUTO_COMPILE_STEPS else False
    return compile


#: what train.log says of each value of TrainConfig.compile
COMPILE_WORDS = {False: "not compiled", True: "torch.compile (whole model)",
                 "regions": "torch.compile (regions: " + ", ".join(COMPILE_REGIONS) + ")"}


def compiled_model(model, how: str = "model", backend: str = "inductor", options: dict | None = None):
    """What the step runs: ``model`` compiled whole ("model"), or a shallow view of it whose
    COMPILE_REGIONS run compiled ("regions": the same parameters; the model itself untouched)."""
    options = COMPILE_OPTIONS if options is None and backend == "inductor" else options
    if how == "model":
        return torch.compile(model, backend=backend, options=options)
    if how != "regions":
        raise ValueError(f"compiled_model: how must be 'model' or 'regions', got {how!r}")
    return compiled_view(model, COMPILE_REGIONS, backend, options)


def compiled_view(obj, names: Sequence[str], backend: str = "inductor", options: dict | None = None):
    """A shallow copy of ``obj`` whose attributes ``names`` (children, bound methods; "a.b" is
    attribute b of a view of child a) run torch.compile-d; ``obj`` is untouched and shares its
    parameters with the copy."""
    # instance attributes shadow the registered children of the copy only; train()/eval() on
    # obj still reach every child, which the view shares (SHMamba reads no flag of its own)
    view, nested = copy.copy(obj), {}
    for name in names:
        head, _, rest = name.partition(".")
        if rest:
            nested.setdefault(head, []).append(rest)
        else:
            vars(view)[name] = torch.compile(getattr(obj, name), backend=backend, options=options)
    for head, rest in nested.items():
        vars(view)[head] = compiled_view(getattr(obj, head), rest, backend, options)
    return view


class GraphStep:
    """The training step captured in a CUDA graph.  :meth:`prepare` sets the static shape of
    the coming plans (a larger one than before is captured anew after one eager step); each call
    takes a device plan row and device scales [2]."""

    def __init__(self, model, optimizers, schedulers, settings: StepSettings, autocast: Callable,
                 data: StoreData, split: str, warmup: int = 3, compile: bool | str = False,
                 warn: Callable[[str], None] | None = None):
        self.model, self.optimizers, self.schedulers, self.s = model, optimizers, schedulers, settings
        # torch.compile fuses the small elementwise kernels that the graph would replay one by one
        how = "model" if compile is True else "regions"
        self.run_model = compiled_model(model, how) if compile else model
        self.compile_untried, self.warn = bool(compile), warn or (lambda msg: None)
        self.autocast, self.data, self.split = autocast, data, split
        self.acc = torch.zeros(4, dtype=torch.float64, device=data.device)
        self.scales = torch.ones(2, dtype=torch.float32, device=data.device)
        self.stream = torch.cuda.Stream(data.device)
        self.shape: StaticShape | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_left = warmup

    def prepare(self, shape: StaticShape) -> StaticShape:
        """The shape to pack the coming plans with: the captured one if it holds them."""
        if self.shape is not None and shape.questions == self.shape.questions \
                and shape.videos <= self.shape.videos:
            return self.shape
        self.shape, self.graph = shape, None
        self.plan = torch.zeros(shape.width, dtype=torch.int64, device=self.data.device)
        self.eager_left = max(self.eager_left, 1)
        return shape

    def _fwd_bwd(self) -> None:
        """Reads only the static buffers; writes grads and ``acc``."""
        batch, video_mask = gather_static(self.data, self.split, self.plan, self.shape)
        with self.autocast():
            out = forward(self.run_model, batch, video_mask)
        loss, metrics = loss_and_metrics(out, batch.answer, video_mask.sum().double(),
                                         self.scales, self.s)
        loss.backward()
        clip_gradients(self.model, self.s.grad_clip)
        self.acc += metrics

    def __call__(self, plan: torch.Tensor, scales: torch.Tensor) -> None:
        self.plan.copy_(plan, non_blocking=True)
        self.scales.copy_(scales, non_blocking=True)
        if self.graph is None and self.eager_left == 0:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
            step_optimizers(self.optimizers, self.schedulers)
            return
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self._first_fwd_bwd() if self.compile_untried else self._fwd_bwd()
            step_optimizers(self.optimizers, self.schedulers)
            for o in self.optimizers:
                o.zero_grad(set_to_none=True)
        torch.cuda.current_stream().wait_stream(self.stream)
        self.eager_left -= 1

    def _first_fwd_bwd(self) -> None:
        """The first compiled call compiles; if that fails and the plain model runs the same
        step, warn and go on without compiling (an error of the step itself still raises)."""
        try:
            self._fwd_bwd()
            self.compile_untried = False  # compiled and ran: later calls need no guard
        except Exception as exc:  # noqa: BLE001  (the retry below re-raises a real error)
            for o in self.optimizers:
                o.zero_grad(set_to_none=True)
            self.run_model, self.compile_untried = self.model, False
            self._fwd_bwd()
            self.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:300]}); "
                      "the step runs uncompiled (set compile = false to skip it)")

    def _capture(self) -> None:
        """Record forward + backward + clipping once; the grads it writes stay the parameters'
        ``.grad`` for every replay (so nothing may set them to None afterwards)."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.graph(graph, stream=self.stream):
            self._fwd_bwd()
        torch.cuda.current_stream().wait_stream(self.stream)
        self.graph = graph


def graphs_possible(data: StoreData, ctx: DistContext | None = None) -> tuple[bool, str]:
    """Whether CUDA graphs can replay steps and predictions here, and why (not)."""
    if data.device.type != "cuda":
        return False, "not on CUDA"
    if ctx is not None and ctx.distributed:
        return False, "DDP"
    if not data.fully_resident:
        return False, "data streamed from HDF5"
    return True, "one CUDA device, resident data"


def graph_autocast(device: torch.device, amp: str) -> Callable:
    """bf16 autocast without its weight-cast cache (a cache cannot live inside a CUDA graph)."""
    on = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not on:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
