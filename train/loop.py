"""The training loop: ``train(cfg) -> RunResult``.

One epoch = a seeded permutation of the train split (shuffled questions, or with
``sampler='video'`` each video's questions consecutive) cut into global batches; every rank takes
its contiguous slice of each global batch.  A step (:mod:`train.step`) is replayed from a CUDA
graph on one CUDA device with resident data, and runs eagerly elsewhere (CPU, DDP, streamed
data).  After each epoch: validation through the scorer, ``metrics.jsonl``, atomic ``last`` (and
``best``) checkpoints, early stopping.  Exact resume, DDP loss normalisation and the step paths
are explained in docs/TRAINING.md.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.config import ConfigError, read_config_file
from common.files import write_json_atomic
from model import BackendUnavailable, build_model, count_parameters, resolve_backend, variant_config
from qa.scoring import score

from .checkpoint import (capture_rng, check_compatible, find_checkpoint, restore_rng,
                         save_checkpoint, tensorize)
from .curvature import curvature_record
from .config import TrainConfig, config_dict, load_train_config, resume_config
from .cpu import cpu_runtime_note, keep_freed_memory
from .data import (DataError, StoreData, batch_indices, check_splits, dim_differences, epoch_order,
                   open_store, store_dims, video_grouped_order)
from .distributed import (DistContext, all_reduce_sum, barrier, broadcast_object,
                          init_distributed, rank_slice, shutdown)
from .evaluate import store_records, store_vocabulary
from .optim import make_optimizers, make_schedulers
from .predict import Predictor, prediction_map
from .progress import LossDisplay, console_for, progress_bar
from .plots import plot_curvature_epochs
from .runs import (CONFIG_FILE, STORE_FILE, RunError, RunInterrupted, append_metrics, close_logger,
                   new_run_dir, read_json, read_metrics, resolve_run_dir, run_logger, set_latest,
                   truncate_metrics)
from .step import (AUTO_COMPILE_STEPS, COMPILE_WORDS, EagerStep, GraphStep, StepSettings,
                   graph_autocast, graphs_possible, pack_plans, plans_shape, resolve_compile)


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


@dataclass
class LoopState:
    """The loop's own state, saved with every checkpoint."""

    epoch: int = 0
    step: int = 0
    best_val: float | None = None
    best_epoch: int = 0
    bad_evals: int = 0
    stopped_early: bool = False


def model_config_for(variant: str, overrides: dict, dims: dict, store_path: str = "store"):
    """The variant's SHMambaConfig with the store's dims; an override of a dim that disagrees
    with the store is an error naming it."""
    over = dict(overrides)
    # multiple choice (n_options > 0): the model scores the options; no answer classifier
    want = {"audio_dim": dims["audio_dim"], "visual_dim": dims["visual_dim"],
            "text_dim": dims["text_dim"],
            "n_answers": 0 if dims["n_options"] > 0 else dims["n_answers"],
            "n_options": dims["n_options"]}
    bad = dim_differences(want, over, want, "store", "config model")
    if bad:
        raise DataError(f"store {store_path} does not match the config: " + "; ".join(bad))
    over.update(want)
    return variant_config(variant, **over)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def prepare_config(config_file: str | None = None, overrides: dict | None = None,
                   resume: str | None = None) -> tuple[TrainConfig, Path | None]:
    """The run's config: a new one (defaults <- file <- overrides), or for ``resume`` the
    recorded one with only runtime fields overridden.  Returns (config, run dir or None)."""

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
        overrides = {**read_config_file(config_file), **(overrides or {})}
    return resume_config(recorded, overrides), run_dir


def train(cfg: TrainConfig, resume: str | Path | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> RunResult:
    """Train (or, with ``resume`` = a run dir / ``runs/latest``, continue) one run."""
    ctx = init_distributed(cfg.device)
    try:
        return _train(cfg, ctx, resume, on_epoch)
    finally:
        shutdown(ctx)


def _train(cfg: TrainConfig, ctx: DistContext, resume, on_epoch) -> RunResult:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # on the CPU, page faults took as much time as the math (train/cpu.py)
    kept = keep_freed_memory() if ctx.device.type == "cpu" else False
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    # store and model config first: bad input fails before a run directory exists
    store = open_store(cfg.store)
    dims = store_dims(store)
    model_cfg = model_config_for(cfg.variant, cfg.model, dims, cfg.store)
    try:  # a forced backend that cannot run here fails before a run directory exists
        resolve_backend(model_cfg.backend, model_cfg.d_state, model_cfg.d_conv)
    except BackendUnavailable as exc:
        raise ConfigError(f"model.backend: {exc}; use --set model.backend=auto") from None
    check_splits(store, [cfg.train_split] + ([cfg.val_split] if cfg.val_split else []))
    run_dir: Path | None = None
    if resume is not None:
        run_dir = resolve_run_dir(resume)
        resume_config(read_json(run_dir / CONFIG_FILE), config_dict(cfg))  # the same run?
    elif ctx.is_main:
        run_dir = new_run_dir(cfg.out, cfg.name)
    run_dir = Path(broadcast_object(str(run_dir) if run_dir else None, ctx))
    logger = run_logger(run_dir if ctx.is_main else None)
    if ctx.device.type == "cpu":
        logger.info(cpu_runtime_note(kept))
    try:
        trainer = Trainer(cfg, ctx, run_dir, resume is not None, store, dims, model_cfg, logger)
        return trainer.run(on_epoch)
    except KeyboardInterrupt:
        logger.info("interrupted (Ctrl-C)")
        raise RunInterrupted(run_dir) from None
    except BaseException as exc:
        logger.exception(f"training failed: {exc!r}")
        raise
    finally:
        close_logger(logger)


class Trainer:
    """One run: model, data, optimizers, the step, and the loop's state."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, run_dir: Path, resuming: bool, store,
                 dims: dict, model_cfg, logger):
        self.cfg, self.ctx, self.run_dir, self.resuming = cfg, ctx, run_dir, resuming
        self.store, self.dims, self.model_cfg, self.logger = store, dims, model_cfg, logger
        self.console = console_for(ctx.is_main)
        self.identity = store.identity()
        self.state = LoopState()
        self._check_resumed_store()
        seed_everything(cfg.seed)
        self.model = build_model(model_cfg).to(ctx.device)
        if ctx.is_main and not resuming:
            write_json_atomic(run_dir / CONFIG_FILE, config_dict(cfg))
            write_json_atomic(run_dir / STORE_FILE, self.identity)
        self._log_start()
        self.data = StoreData(store, [cfg.train_split] + ([cfg.val_split] if cfg.val_split else []),
                              ctx.device, with_tokens=bool(model_cfg.use_tokens),
                              memory_budget_mb=cfg.memory_budget_mb, prefetch=cfg.prefetch,
                              log=self.log)
        self.train_info = self.data.splits[cfg.train_split]
        self.steps_per_epoch = len(batch_indices(torch.arange(len(self.train_info)), cfg.batch_size,
                                                 cfg.drop_last, ctx.world))
        if self.steps_per_epoch == 0:
            raise DataError(f"split {cfg.train_split!r} has {len(self.train_info)} questions: too few "
                           f"for batch_size {cfg.batch_size} with drop_last={cfg.drop_last}")
        self.optimizers = make_optimizers(self.model, cfg)
        self.schedulers, _ = make_schedulers(self.optimizers, cfg, self.steps_per_epoch * cfg.epochs)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self._validation_setup()
        self.predictor = Predictor(self.model, self.data, cfg.eval_batch_size, cfg.amp, ctx,
                                   graphs=graphs_possible(self.data, ctx)[0] and cfg.cuda_graph)

    # -- set-up ------------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        self.logger.info(msg)
        self.console.log(msg)

    def _check_resumed_store(self) -> None:
        if not self.resuming:
            return
        recorded = read_json(self.run_dir / STORE_FILE)
        if recorded.get("fingerprint") != self.identity.get("fingerprint"):
            raise RunError(f"--resume: store {self.cfg.store} (fingerprint "
                           f"{str(self.identity.get('fingerprint'))[:12]}) is not the store this run "
                           f"was trained on (fingerprint {str(recorded.get('fingerprint'))[:12]}, "
                           f"{recorded.get('path')})")

    def _log_start(self) -> None:
        described = self.model.describe()
        self.log(f"run {self.run_dir} ({'resumed' if self.resuming else 'new'}); device "
                 f"{self.ctx.device}, {self.ctx.world} process(es); variant {self.cfg.variant}, "
                 f"{count_parameters(self.model)['total']:,} trainable parameters; Mamba backend "
                 f"{described.get('backend')} ({described.get('backend_reason')})")
        self.logger.info(f"model: {described}")

    def _validation_setup(self) -> None:
        cfg = self.cfg
        self.val_records = [r for r in store_records(self.store, self.data.splits[cfg.val_split])
                            if r.answer] if cfg.val_split else []
        self.val_ids = {r.question_id for r in self.val_records}
        if cfg.val_split and not self.val_records:
            raise DataError(f"split {cfg.val_split!r} has no answered questions to validate on "
                           "(set val_split to another split, or '' for none)")
        self.vocab = store_vocabulary(self.store.attrs)

    def _make_step(self):
        cfg, ok = self.cfg, graphs_possible(self.data, self.ctx)
        settings = StepSettings(float(cfg.align_weight), float(cfg.grad_clip), float(cfg.label_smoothing))
        autocast = graph_autocast(self.ctx.device, cfg.amp)
        if cfg.cuda_graph and ok[0]:
            compile = resolve_compile(cfg.compile, self.steps_per_epoch * cfg.epochs)
            auto = "" if cfg.compile != "auto" else (
                "auto: " if compile else f"auto: fewer than {AUTO_COMPILE_STEPS} steps, ")
            self.log(f"training step: CUDA graph ({ok[1]}), static batch {cfg.batch_size}, "
                     f"{auto}{COMPILE_WORDS[compile]}")
            if compile:
                self.log("the first steps compile: about 1.5 min on a fresh machine, seconds once "
                         "inductor's disk cache holds them (--set compile=false skips it)")
            return GraphStep(self.model, self.optimizers, self.schedulers, settings, autocast,
                             self.data, cfg.train_split, compile=compile, warn=self.warn)
        why = "cuda_graph = false" if not cfg.cuda_graph else ok[1]
        self.log(f"training step: eager ({why})")
        if cfg.compile not in (False, "auto"):
            self.warn(f"compile = {cfg.compile} applies to the CUDA-graph step only; the eager "
                      "step runs uncompiled")
        train_model = self.model
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            train_model = DDP(self.model, device_ids=ids, find_unused_parameters=cfg.ddp_find_unused)
        return EagerStep(self.model, train_model, self.optimizers, self.schedulers, settings,
                         autocast, self.ctx.device)

    # -- resume --------------------------------------------------------------------------------

    def restore(self) -> bool:
        """Load the last checkpoint of a resumed run; True if the run had already finished."""
        if not self.resuming:
            return False
        if not (self.run_dir / "checkpoints" / "last").is_symlink():
            self.log("no checkpoint yet (the run stopped during its first epoch); starting at epoch 1")
            if self.ctx.is_main:
                truncate_metrics(self.run_dir, 0)
            return False
        ckpt = find_checkpoint(self.run_dir, "last")
        check_compatible(ckpt.meta, variant=self.cfg.variant, dims=self.dims)
        ckpt.load_weights(self.model)
        saved = ckpt.load_state()
        for o, s in zip(self.optimizers, saved["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, saved["schedulers"], strict=True):
            sch.load_state_dict(s)
        restore_rng(saved["rng"], self.ctx.device)
        self.generator.set_state(saved["data_generator"])
        self.state = LoopState(**saved["loop"])
        if self.ctx.is_main:
            truncate_metrics(self.run_dir, self.state.epoch)
        self.log(f"resumed from {ckpt.path.name}: epoch {self.state.epoch}, step {self.state.step}")
        if self.state.stopped_early or self.state.epoch >= self.cfg.epochs:
            self.log("this run had already finished; nothing to do")
            return True
        return False

    # -- the loop ------------------------------------------------------------------------------

    def run(self, on_epoch: Callable[[dict], None] | None = None) -> RunResult:
        if self.restore():
            return self._result("early_stop" if self.state.stopped_early else "completed", {})
        step_fn = self._make_step()
        stopped, row = "completed", {}
        with progress_bar(self.console, self.cfg.progress and self.ctx.is_main) as progress:
            for epoch in range(self.state.epoch + 1, self.cfg.epochs + 1):
                t0 = time.perf_counter()
                row = self.train_epoch(epoch, step_fn, progress)
                improved = self.validate(row)
                self.record_curvature(row)
                row["time"] = time.perf_counter() - t0
                self.save(row, improved)
                if on_epoch is not None:
                    on_epoch(row)
                stopped = self._stop_reason(epoch)
                if stopped != "completed":
                    break
        if self.ctx.is_main:
            plot_curvature_epochs(read_metrics(self.run_dir),
                                  self.run_dir / "plots" / "curvature_epochs.png",
                                  title=f"{self.run_dir.name}: per-video curvature c")
        return self._result(stopped, row)

    def _result(self, stopped: str, row: dict) -> RunResult:
        s = self.state
        return RunResult(self.run_dir, s.epoch, s.step, s.best_epoch, s.best_val, stopped, row)

    def _stop_reason(self, epoch: int) -> str:
        if self.state.stopped_early:
            self.log(f"early stopping: no validation gain in {self.state.bad_evals} evaluation(s); "
                     f"best {self.state.best_val} at epoch {self.state.best_epoch}")
            return "early_stop"
        if self.cfg.stop_after and epoch >= self.cfg.stop_after and epoch < self.cfg.epochs:
            self.log(f"stopping after epoch {epoch} (stop_after); continue with --resume {self.run_dir}")
            return "stop_after"
        return "completed"

    def epoch_batches(self) -> tuple[list[torch.Tensor], list[tuple[float, float]]]:
        """This rank's slice of every global batch of the next epoch, and each step's loss
        scales (CE: ranks / answered questions of the global batch; alignment: this rank's
        share of the batch's distinct videos, times the ranks)."""
        cfg, ctx, info = self.cfg, self.ctx, self.train_info
        order = (video_grouped_order(info.video_local, self.generator)
                 if cfg.sampler == "video" else epoch_order(len(info), self.generator))
        local, norms = [], []
        for gb in batch_indices(order, cfg.batch_size, cfg.drop_last, ctx.world):
            gb_np = gb.numpy()
            n_valid = max(1, int((info.answer[gb_np] >= 0).sum()))
            slices = [rank_slice(len(gb), DistContext(r, ctx.world, 0, ctx.device))
                      for r in range(ctx.world)]
            v_counts = [len(np.unique(info.video_local[gb_np[s]])) for s in slices]
            local.append(gb[slices[ctx.rank]])
            norms.append((ctx.world / n_valid, ctx.world * v_counts[ctx.rank] / sum(v_counts)))
        return local, norms

    def train_epoch(self, epoch: int, step_fn, progress) -> dict:
        t0 = time.perf_counter()
        batches, norms = self.epoch_batches()
        task = progress.add_task(f"epoch {epoch}/{self.cfg.epochs}", total=len(batches), info="")
        step_fn.acc.zero_()
        display = LossDisplay(step_fn.acc, progress, task)
        self.model.train()
        if isinstance(step_fn, GraphStep):
            n_vid = self._graph_epoch(step_fn, batches, norms, display)
        else:
            n_vid = self._eager_epoch(step_fn, batches, norms, display)
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)
        train_time = time.perf_counter() - t0
        progress.remove_task(task)
        self.state.epoch = epoch
        return self._train_row(epoch, step_fn.acc, n_vid, sum(len(b) for b in batches), train_time)

    def _eager_epoch(self, step_fn: EagerStep, batches, norms, display) -> int:
        n_vid = 0
        for i, batch in enumerate(self.data.batches(self.cfg.train_split, batches)):
            step_fn(batch, *norms[i])
            n_vid += int(batch.audio.shape[0])
            self.state.step += 1
            display.advance(i)
        return n_vid

    def _graph_epoch(self, step_fn: GraphStep, batches, norms, display) -> int:
        plans_np = [self.data.plan(self.cfg.train_split, b.numpy()) for b in batches]
        shape = step_fn.prepare(plans_shape(plans_np, self.cfg.batch_size))
        plans = torch.from_numpy(pack_plans(plans_np, shape)).to(self.ctx.device)
        scales = torch.tensor(norms, dtype=torch.float32).to(self.ctx.device)
        for i in range(len(batches)):
            step_fn(plans[i], scales[i])
            self.state.step += 1
            display.advance(i)
        return sum(len(p["videos"]) for p in plans_np)

    def _train_row(self, epoch: int, acc: torch.Tensor, n_vid: int, n_q: int, train_time: float) -> dict:
        totals = torch.cat([acc, torch.tensor([n_vid, n_q], dtype=torch.float64, device=acc.device)])
        all_reduce_sum(totals, self.ctx)
        ce_tot, n_ans, n_correct, al_tot, n_vid_all, n_q_all = totals.tolist()
        ce, align = ce_tot / max(1.0, n_ans), al_tot / max(1.0, n_vid_all)
        lam = float(self.cfg.align_weight)
        return {"epoch": epoch, "step": self.state.step, "ce": ce, "align": align,
                "train_loss": ce + lam * align, "train_acc": 100.0 * n_correct / max(1.0, n_ans),
                "lr": self.optimizers[0].param_groups[0]["lr"], "train_time": train_time,
                "qa_per_s": n_q_all / max(train_time, 1e-9), "val_overall": None}

    def validate(self, row: dict) -> bool:
        """Validation (when due) and early-stopping bookkeeping; True if this epoch is the best."""
        cfg, s, epoch = self.cfg, self.state, row["epoch"]
        improved = False
        if cfg.val_split and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            t0 = time.perf_counter()
            pmap = prediction_map(self.predictor(cfg.val_split), self.data, cfg.val_split)
            report = score(self.val_records, {q: a for q, a in pmap.items() if q in self.val_ids},
                           self.vocab)
            row.update(val_overall=report["overall"], val_groups=report.get("groups", {}),
                       val_time=time.perf_counter() - t0)
            improved = s.best_val is None or report["overall"] > s.best_val
            s.bad_evals = 0 if improved else s.bad_evals + 1
            if improved:
                s.best_val, s.best_epoch = report["overall"], epoch
            s.stopped_early = bool(cfg.patience and s.bad_evals >= cfg.patience)
        elif not cfg.val_split and (s.best_val is None or -row["train_loss"] > s.best_val):
            # no validation split: "best" follows the training loss
            s.best_val, s.best_epoch, improved = -row["train_loss"], epoch, True
        row["best"] = improved
        return improved

    def record_curvature(self, row: dict) -> None:
        """Per-video curvature statistics of the train and val videos (main process only)."""
        if not self.ctx.is_main:
            return
        splits = [self.cfg.train_split] + ([self.cfg.val_split] if self.cfg.val_split else [])
        record = curvature_record(self.model, self.data, splits, float(self.model_cfg.k0),
                                  self.cfg.eval_batch_size, self.model_cfg.curvature == "adaptive",
                                  self.warn)
        if record is not None:
            row["curvature"] = record

    def warn(self, msg: str) -> None:
        self.logger.warning(msg)
        self.console.log(f"[yellow]warning:[/yellow] {msg}")

    def save(self, row: dict, improved: bool) -> None:
        if self.ctx.is_main:
            saved = {"optimizers": [o.state_dict() for o in self.optimizers],
                     "schedulers": [s.state_dict() for s in self.schedulers],
                     "rng": capture_rng(self.ctx.device), "data_generator": self.generator.get_state(),
                     "loop": asdict(self.state)}
            meta = {"variant": self.cfg.variant, "model_config": self.model_cfg.to_dict(),
                    "dims": {k: v for k, v in self.dims.items() if k != "type_names"},
                    "store": self.identity, "train_config": config_dict(self.cfg),
                    "step": self.state.step, "val_overall": row["val_overall"],
                    "train_loss": row["train_loss"]}
            append_metrics(self.run_dir, row)  # metrics first: a resume truncates newer rows
            save_checkpoint(self.run_dir / "checkpoints", row["epoch"], self.model, tensorize(saved),
                            meta, links=("last", "best") if improved else ("last",))
            set_latest(self.run_dir)  # only a run with a checkpoint becomes runs/latest
        barrier(self.ctx)
        val = "-" if row["val_overall"] is None else f"{row['val_overall']:.2f}"
        self.log(f"epoch {row['epoch']}/{self.cfg.epochs} step {self.state.step}: loss "
                 f"{row['train_loss']:.4f} (ce {row['ce']:.4f}, align {row['align']:.4f}), train acc "
                 f"{row['train_acc']:.2f}, val {val}{' *' if improved else ''}, lr {row['lr']:.3g}, "
                 f"{row['qa_per_s']:.0f} QA/s, {row['time']:.1f}s")
