"""The training loop: ``train(cfg) -> RunResult``.

One epoch = a seeded permutation of the train split (shuffled questions, or with
``sampler='video'`` video-grouped: each video's questions consecutive, see
:func:`train.data.video_grouped_order`, so a batch runs each video's per-video path once for
several of its questions) cut into global batches; every rank takes its
contiguous slice of each global batch (see :mod:`train.distributed`).  Per step: bf16 autocast on
CUDA, loss = CE + lambda * alignment, backward, global grad-norm clipping, AdamW (plus
geoopt's RiemannianAdam for manifold parameters, if the model has any), LR schedule step.
After each epoch: validation accuracy through the scorer, ``metrics.jsonl``, atomic ``last``
(and ``best``) checkpoints, early stopping.

Exact resume: a checkpoint holds the weights, optimizer and scheduler state, epoch/step,
early-stopping state, the torch/CUDA/numpy/Python RNG states and the data-order generator, all
captured at the end of an epoch, after which nothing consumes randomness before the next epoch
starts — so a resumed run computes exactly what the uninterrupted run computes (on CPU).

Loss normalisation under DDP: each rank's CE sum is divided by the number of answered questions
of the *global* batch and multiplied by the world size (DDP averages gradients), so N ranks
minimise the same loss as one process.  The alignment loss is a per-video mean computed by each
rank over its own distinct videos and weighted by its share of them; with videos shared between
ranks' slices this equals the one-process value only approximately.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import (capture_rng, check_compatible, find_checkpoint, restore_rng,
                         save_checkpoint, tensorize)
from .config import TrainConfig, config_dict, resume_config
from .data import (StoreData, batch_indices, epoch_order, open_store, store_dims,
                   video_grouped_order)
from .distributed import (DistContext, all_gather_cat, all_reduce_sum, barrier, broadcast_object,
                          init_distributed, rank_slice, shutdown)
from .runs import (CONFIG_FILE, STORE_FILE, RunError, append_metrics, close_logger,
                   new_run_dir, read_json, resolve_run_dir, run_logger, set_latest,
                   truncate_metrics, write_json_atomic)

#: store dims that are model inputs (SHMambaConfig fields of the same name)
MODEL_DIM_FIELDS = ("audio_dim", "visual_dim", "text_dim", "n_answers", "n_options")


@dataclass
class RunResult:
    """What a finished (or stopped) ``train`` call did."""

    run_dir: Path
    epochs_done: int
    step: int
    best_epoch: int
    best_val: float | None
    stopped: str                      # 'completed' | 'early_stop' | 'stop_after'
    last_metrics: dict = field(default_factory=dict)


# ---- model, optimizers, schedule -------------------------------------------------------------


def model_config_for(variant: str, overrides: dict, dims: dict, store_path: str = "store"):
    """The variant's SHMambaConfig with the store's dims; an override of a dim that disagrees
    with the store is an error naming it."""
    from model import variant_config

    over = dict(overrides)
    # multiple choice (n_options > 0): the model scores the options; no answer classifier
    want = {"audio_dim": dims["audio_dim"], "visual_dim": dims["visual_dim"],
            "text_dim": dims["text_dim"],
            "n_answers": 0 if dims["n_options"] > 0 else dims["n_answers"],
            "n_options": dims["n_options"]}
    bad = [f"{k}: store has {want[k]}, config model.{k} = {over[k]}"
           for k in want if k in over and int(over[k]) != int(want[k])]
    if bad:
        raise ValueError(f"store {store_path} does not match the config: " + "; ".join(bad))
    over.update(want)
    return variant_config(variant, **over)


def build_run_model(model_cfg) -> torch.nn.Module:
    from model import build_model

    return build_model(model_cfg)


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
    import geoopt

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


def amp_context(device: torch.device, amp: str) -> Callable[[], Any]:
    """``amp='auto'``: bf16 autocast on CUDA, nothing on CPU; 'bf16': autocast anywhere."""
    on = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not on:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def forward(model: torch.nn.Module, batch):
    """The model call for one :class:`~train.data.Batch`."""
    return model(batch.audio, batch.visual, batch.sentence, tokens=batch.tokens,
                 token_mask=batch.token_mask, video_index=batch.video_index,
                 options=batch.options)


# ---- prediction ------------------------------------------------------------------------------


@dataclass
class Predictions:
    """Predicted class (answer index, or option index for multiple choice) per question of a
    split, in the split's order, and each referenced video's curvature (NaN where the model has
    none)."""

    pred: np.ndarray       # [N] int64
    video_local: np.ndarray  # [Vs] rows of StoreData.v_rows seen
    curvature: np.ndarray  # [Vs] float64


@torch.no_grad()
def predict(model: torch.nn.Module, data: StoreData, split: str, batch_size: int,
            amp: str = "auto", ctx: DistContext | None = None) -> Predictions:
    """Argmax predictions for every question of ``split`` (sharded over ranks, gathered on all)."""
    n = len(data.splits[split])
    positions = torch.arange(n)
    if ctx is not None and ctx.distributed:
        positions = positions[rank_slice(n, ctx)]
    was_training = model.training
    model.eval()
    autocast = amp_context(data.device, amp)
    preds, vids, curvs = [], [], []
    for batch in data.batches(split, list(torch.split(positions, batch_size))):
        with autocast():
            out = forward(model, batch)
        preds.append(out.logits.float().argmax(-1))
        vids.append(batch.videos)
        if out.curvature is not None:
            curvs.append(out.curvature.float().reshape(-1))
        else:
            curvs.append(torch.full((len(batch.videos),), float("nan"), device=data.device))
    model.train(was_training)
    dev = data.device
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=dev)
    vid = torch.cat(vids) if vids else torch.zeros(0, dtype=torch.long, device=dev)
    curv = torch.cat(curvs) if curvs else torch.zeros(0, device=dev)
    if ctx is not None and ctx.distributed:
        pred, vid, curv = (all_gather_cat(t, ctx) for t in (pred, vid, curv))
    vid_np = vid.cpu().numpy()
    uniq, first = np.unique(vid_np, return_index=True)
    return Predictions(pred.cpu().numpy().astype(np.int64), uniq,
                       curv.double().cpu().numpy()[first])


def prediction_map(pred: Predictions, data: StoreData, split: str) -> dict[int, int | str]:
    """question id -> answer string (or option index for multiple choice), for the scorer."""
    info = data.splits[split]
    vocab = list(data.store.attrs["answer_vocab"])
    if data.with_options:
        return {int(q): int(p) for q, p in zip(info.question_ids, pred.pred)}
    return {int(q): vocab[int(p)] for q, p in zip(info.question_ids, pred.pred)}


# ---- the loop --------------------------------------------------------------------------------


def _console(enabled: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=not enabled)


def _progress(console, enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=not enabled, transient=True)


def prepare_config(config_file: str | None = None, overrides: dict | None = None,
                   resume: str | None = None) -> tuple[TrainConfig, Path | None]:
    """The run's config: a new one (defaults <- file <- overrides), or for ``resume`` the
    recorded one with only runtime fields overridden.  Returns (config, run dir or None)."""
    from .config import load_train_config

    if resume is None:
        return load_train_config(config_file, overrides), None
    run_dir = resolve_run_dir(resume)
    recorded = read_json(run_dir / CONFIG_FILE)
    if not Path(recorded.get("store", "")).exists() and (run_dir / STORE_FILE).is_file():
        # a relative store path recorded from another working directory: use the absolute one
        absolute = read_json(run_dir / STORE_FILE).get("path")
        if absolute and Path(absolute).exists():
            overrides = {"store": absolute, **{k: v for k, v in (overrides or {}).items()
                                               if v is not None}}
    if config_file is not None:
        from store.config_io import read_config_file

        file_over = {k: v for k, v in read_config_file(config_file).items()}
        overrides = {**file_over, **(overrides or {})}
    return resume_config(recorded, overrides), run_dir


def train(cfg: TrainConfig, resume: str | Path | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> RunResult:
    """Train (or, with ``resume`` = a run dir / ``runs/latest``, continue) one run.

    The model's hyperbolic math is geoopt's code run eagerly (:mod:`model.eager_geoopt`): geoopt's
    ``torch.jit.script`` functions switch to symbolically differentiated graphs after a few calls
    with graph optimisation on, which changes gradients in the last bits, and keep that graph for
    the rest of the process — ``optimized_execution(False)`` below cannot undo it.  A run would
    then compute differently depending on what its process ran before (so a resumed run would not
    repeat an uninterrupted one).  Optimisation stays off here for any other scripted code
    (geoopt's optimizer math on manifold parameters, should a model have them).
    """
    ctx = init_distributed(cfg.device)
    try:
        with torch.jit.optimized_execution(False):
            return _train(cfg, ctx, resume, on_epoch)
    finally:
        shutdown(ctx)


def _train(cfg: TrainConfig, ctx: DistContext, resume, on_epoch) -> RunResult:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    console = _console(ctx.is_main)

    # -- store and model config first: bad input fails before a run directory exists ------------
    store = open_store(cfg.store)
    dims = store_dims(store)
    model_cfg = model_config_for(cfg.variant, cfg.model, dims, cfg.store)

    # -- run directory (rank 0 decides; everyone agrees) ----------------------------------------
    run_dir: Path | None = None
    if resume is not None:
        run_dir = resolve_run_dir(resume)
        recorded = read_json(run_dir / CONFIG_FILE)
        resume_config(recorded, {k: v for k, v in config_dict(cfg).items()})  # same run?
    elif ctx.is_main:
        run_dir = new_run_dir(cfg.out, cfg.name)
    run_dir = Path(broadcast_object(str(run_dir) if run_dir else None, ctx))
    logger = run_logger(run_dir if ctx.is_main else None)

    def log(msg: str) -> None:
        logger.info(msg)
        console.log(msg)

    try:
        return _train_in(cfg, ctx, run_dir, resume is not None, store, dims, model_cfg, log,
                         logger.info, console, on_epoch)
    except BaseException as exc:
        logger.exception(f"training failed: {exc!r}")
        raise
    finally:
        close_logger(logger)


def _train_in(cfg, ctx, run_dir, resuming, store, dims, model_cfg, log, logger_only, console,
              on_epoch) -> RunResult:
    from model import count_parameters

    from .evaluate import store_records, store_vocabulary
    from .scoring import score

    # -- store identity, model --------------------------------------------------------------------
    identity = store.identity()
    if resuming:
        recorded_store = read_json(run_dir / STORE_FILE)
        if recorded_store.get("fingerprint") != identity.get("fingerprint"):
            raise RunError(f"--resume: store {cfg.store} (fingerprint "
                           f"{str(identity.get('fingerprint'))[:12]}) is not the store this run "
                           f"was trained on (fingerprint "
                           f"{str(recorded_store.get('fingerprint'))[:12]}, {recorded_store.get('path')})")
    seed_everything(cfg.seed)
    model = build_run_model(model_cfg).to(ctx.device)
    if ctx.is_main and not resuming:
        write_json_atomic(run_dir / CONFIG_FILE, config_dict(cfg))
        write_json_atomic(run_dir / STORE_FILE, identity)
        set_latest(run_dir)
    described = model.describe()
    log(f"run {run_dir} ({'resumed' if resuming else 'new'}); device {ctx.device}, "
        f"{ctx.world} process(es); variant {cfg.variant}, "
        f"{count_parameters(model)['total']:,} trainable parameters; Mamba backend "
        f"{described.get('backend')} ({described.get('backend_reason')})")
    logger_only(f"model: {described}")

    splits = [cfg.train_split] + ([cfg.val_split] if cfg.val_split else [])
    data = StoreData(store, splits, ctx.device, with_tokens=bool(model_cfg.use_tokens),
                     memory_budget_mb=cfg.memory_budget_mb, prefetch=cfg.prefetch, log=log)
    train_info = data.splits[cfg.train_split]
    n_train = len(train_info)
    steps_per_epoch = len(batch_indices(torch.arange(n_train), cfg.batch_size, cfg.drop_last,
                                        ctx.world))
    if steps_per_epoch == 0:
        raise ValueError(f"split {cfg.train_split!r} has {n_train} questions: too few for "
                         f"batch_size {cfg.batch_size} with drop_last={cfg.drop_last}")
    total_steps = steps_per_epoch * cfg.epochs
    optimizers = make_optimizers(model, cfg)
    schedulers, warmup = make_schedulers(optimizers, cfg, total_steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    # validation is scored on the answered questions of the split
    val_records = [r for r in store_records(store, data.splits[cfg.val_split]) if r.answer] \
        if cfg.val_split else []
    val_ids = {r.question_id for r in val_records}
    if cfg.val_split and not val_records:
        raise ValueError(f"split {cfg.val_split!r} has no answered questions to validate on "
                         "(set val_split to another split, or '' for none)")
    vocab = store_vocabulary(store.attrs)

    # -- resume state ----------------------------------------------------------------------------
    start_epoch, step = 1, 0
    best_val, best_epoch, bad_evals, stopped_early = None, 0, 0, False
    if resuming and not (run_dir / "checkpoints" / "last").is_symlink():
        # stopped during its first epoch: nothing to restore, the run starts again from epoch 1
        log("no checkpoint yet (the run stopped during its first epoch); starting at epoch 1")
        if ctx.is_main:
            truncate_metrics(run_dir, 0)
    elif resuming:
        ckpt = find_checkpoint(run_dir, "last")
        check_compatible(ckpt.meta, variant=cfg.variant, dims=dims)
        ckpt.load_weights(model)
        state = ckpt.load_state()
        for o, s in zip(optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(s)
        restore_rng(state["rng"], ctx.device)
        generator.set_state(state["data_generator"])
        loop = state["loop"]
        start_epoch, step = int(loop["epoch"]) + 1, int(loop["step"])
        best_val, best_epoch = loop["best_val"], int(loop["best_epoch"])
        bad_evals, stopped_early = int(loop["bad_evals"]), bool(loop["stopped_early"])
        if ctx.is_main:
            truncate_metrics(run_dir, int(loop["epoch"]))
        log(f"resumed from {ckpt.path.name}: epoch {loop['epoch']}, step {step}")
        if stopped_early or start_epoch > cfg.epochs:
            log("this run had already finished; nothing to do")
            return RunResult(run_dir, start_epoch - 1, step, best_epoch, best_val,
                             "early_stop" if stopped_early else "completed")

    train_model: torch.nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                          find_unused_parameters=cfg.ddp_find_unused)
    autocast = amp_context(ctx.device, cfg.amp)
    ckpt_meta_base = {"variant": cfg.variant, "model_config": model_cfg.to_dict(),
                      "dims": {k: v for k, v in dims.items() if k != "type_names"},
                      "store": identity, "train_config": config_dict(cfg)}
    lam = float(cfg.align_weight)
    answers_np = train_info.answer
    vloc_np = train_info.video_local
    last_row: dict = {}
    stopped = "completed"
    epoch = start_epoch - 1

    show_progress = cfg.progress and ctx.is_main
    with _progress(console, show_progress) as progress:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            order = (video_grouped_order(train_info.video_local, generator)
                     if cfg.sampler == "video" else epoch_order(n_train, generator))
            global_batches = batch_indices(order, cfg.batch_size, cfg.drop_last, ctx.world)
            local_batches, norms = [], []
            for gb in global_batches:
                gb_np = gb.numpy()
                n_valid = max(1, int((answers_np[gb_np] >= 0).sum()))
                slices = [rank_slice(len(gb), DistContext(r, ctx.world, 0, ctx.device))
                          for r in range(ctx.world)]
                v_counts = [len(np.unique(vloc_np[gb_np[s]])) for s in slices]
                mine = slices[ctx.rank]
                local_batches.append(gb[mine])
                norms.append((ctx.world / n_valid, ctx.world * v_counts[ctx.rank] / sum(v_counts)))
            task = progress.add_task(f"epoch {epoch}/{cfg.epochs}", total=len(local_batches),
                                     info="")
            # running sums on the device (no sync per step): ce, answered, correct, align*videos
            acc = torch.zeros(4, dtype=torch.float64, device=ctx.device)
            n_vid = n_q = 0.0
            train_model.train()
            for i, batch in enumerate(data.batches(cfg.train_split, local_batches)):
                ce_scale, align_scale = norms[i]
                with autocast():
                    out = forward(train_model, batch)
                logits = out.logits.float()
                ce_sum = F.cross_entropy(logits, batch.answer, ignore_index=-1, reduction="sum",
                                         label_smoothing=cfg.label_smoothing)
                align = out.align_loss.float() if out.align_loss is not None \
                    else logits.new_zeros(())
                loss = ce_sum * ce_scale + lam * align * align_scale
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                for o in optimizers:
                    o.step()
                for s in schedulers:
                    s.step()
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                step += 1
                n_v = float(batch.audio.shape[0])
                n_vid += n_v
                n_q += float(len(batch))
                with torch.no_grad():
                    valid = batch.answer >= 0
                    acc += torch.stack([
                        ce_sum.detach().double(), valid.sum().double(),
                        (logits.argmax(-1).eq(batch.answer) & valid).sum().double(),
                        align.detach().double() * n_v])
                if show_progress:
                    if i % 20 == 0:
                        info = f"loss {acc[0].item() / max(1.0, acc[1].item()):.4f}"
                        progress.update(task, advance=1, info=info)
                    else:
                        progress.update(task, advance=1)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            train_time = time.perf_counter() - t0
            progress.remove_task(task)
            acc = torch.cat([acc, torch.tensor([n_vid, n_q], dtype=torch.float64,
                                               device=ctx.device)])
            all_reduce_sum(acc, ctx)
            ce_tot, n_ans, n_correct, al_tot, n_vid, n_q = acc.tolist()
            ce_mean = ce_tot / max(1.0, n_ans)
            align_mean = al_tot / max(1.0, n_vid)
            row = {"epoch": epoch, "step": step, "ce": ce_mean, "align": align_mean,
                   "train_loss": ce_mean + lam * align_mean,
                   "train_acc": 100.0 * n_correct / max(1.0, n_ans),
                   "lr": optimizers[0].param_groups[0]["lr"], "train_time": train_time,
                   "qa_per_s": n_q / max(train_time, 1e-9), "val_overall": None}

            # -- validation, early stopping, checkpoints ------------------------------------------
            evaluated = bool(cfg.val_split) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs)
            improved = False
            if evaluated:
                preds = predict(model, data, cfg.val_split, cfg.eval_batch_size, cfg.amp, ctx)
                pmap = prediction_map(preds, data, cfg.val_split)
                report = score(val_records, {q: a for q, a in pmap.items() if q in val_ids}, vocab)
                row["val_overall"] = report["overall"]
                row["val_groups"] = report.get("groups", {})
                improved = best_val is None or report["overall"] > best_val
                if improved:
                    best_val, best_epoch, bad_evals = report["overall"], epoch, 0
                else:
                    bad_evals += 1
                if cfg.patience and bad_evals >= cfg.patience:
                    stopped_early = True
            elif not cfg.val_split and (best_val is None or -row["train_loss"] > best_val):
                # no validation split: "best" follows the training loss
                best_val, best_epoch, improved = -row["train_loss"], epoch, True
            row["best"] = improved
            row["time"] = time.perf_counter() - t0
            if ctx.is_main:
                state = {"optimizers": [o.state_dict() for o in optimizers],
                         "schedulers": [s.state_dict() for s in schedulers],
                         "rng": capture_rng(ctx.device), "data_generator": generator.get_state(),
                         "loop": {"epoch": epoch, "step": step, "best_val": best_val,
                                  "best_epoch": best_epoch, "bad_evals": bad_evals,
                                  "stopped_early": stopped_early}}
                meta = {**ckpt_meta_base, "step": step, "val_overall": row["val_overall"],
                        "train_loss": row["train_loss"]}
                # metrics first: a resume truncates rows newer than its checkpoint
                append_metrics(run_dir, row)
                save_checkpoint(run_dir / "checkpoints", epoch, model, tensorize(state), meta,
                                links=("last", "best") if improved else ("last",))
            barrier(ctx)
            last_row = row
            val_txt = "-" if row["val_overall"] is None else f"{row['val_overall']:.2f}"
            log(f"epoch {epoch}/{cfg.epochs} step {step}: loss {row['train_loss']:.4f} "
                f"(ce {ce_mean:.4f}, align {align_mean:.4f}), train acc {row['train_acc']:.2f}, "
                f"val {val_txt}{' *' if improved else ''}, lr {row['lr']:.3g}, "
                f"{row['qa_per_s']:.0f} QA/s, {row['time']:.1f}s")
            if on_epoch is not None:
                on_epoch(row)
            if stopped_early:
                stopped = "early_stop"
                log(f"early stopping: no validation gain in {bad_evals} evaluation(s); best "
                    f"{best_val} at epoch {best_epoch}")
                break
            if cfg.stop_after and epoch >= cfg.stop_after and epoch < cfg.epochs:
                stopped = "stop_after"
                log(f"stopping after epoch {epoch} (stop_after); continue with --resume {run_dir}")
                break
    return RunResult(run_dir, epoch, step, best_epoch, best_val, stopped, last_row)
