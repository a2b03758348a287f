"""The training configuration: one typed dataclass, resolved by :func:`common.config.resolve`
(defaults <- ``--config`` TOML/YAML/JSON file <- CLI options and ``--set key=value``).

The resolved config is written to ``<run>/config.json`` and is exactly what ``--resume`` reads
back, so a resumed run is the same run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.config import ConfigError, resolve, to_dict

#: Fields that only change *how* a run is executed, never its numbers on a given device; they may
#: differ when a run is resumed.  Every other field must equal the run's recorded config.
RUNTIME_FIELDS: frozenset[str] = frozenset(
    {"progress", "stop_after", "num_threads", "device", "memory_budget_mb", "prefetch", "out",
     "store", "cuda_graph", "compile"}
)


@dataclass
class TrainConfig:
    """Everything that defines one training run (see ``python cli.py train --help``)."""

    store: str = ""                     #: entry file of the feature store (feats.h5)
    out: str = "runs"                   #: folder that holds run directories and ``latest``
    name: str = ""                      #: run directory name; "" = a timestamp
    variant: str = "shmamba"            #: a name from ``model.VARIANTS``
    model: dict[str, Any] = field(default_factory=dict)  #: overrides of the variant's SHMambaConfig
    epochs: int = 30
    batch_size: int = 64                #: questions per global batch (all ranks together)
    eval_batch_size: int = 512          #: questions per batch when predicting
    lr: float = 1e-4
    weight_decay: float = 0.01          #: decoupled (AdamW); never on biases, norms, 1-d params
    warmup_steps: int = 0               #: > 0 overrides warmup_ratio
    warmup_ratio: float = 0.05          #: fraction of all optimizer steps spent warming up
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.01          #: the schedule ends at lr * min_lr_ratio
    grad_clip: float = 1.0              #: max global grad norm; 0 = off
    align_weight: float = 0.1           #: lambda in loss = CE + lambda * alignment
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"                #: 'auto' = cuda when available, else cpu; or 'cpu', 'cuda:1'
    amp: Literal["auto", "bf16", "off"] = "auto"  #: 'auto' = bf16 autocast on CUDA, off on CPU
    patience: int = 5                   #: early stopping after this many evals without a gain; 0 = off
    train_split: str = "train"
    val_split: str = "val"
    eval_every: int = 1                 #: validate every N epochs (and after the last)
    drop_last: bool = False             #: drop the final partial batch of each epoch
    #: batch order: 'question' = shuffled questions (i.i.d. batches, as published systems train);
    #: 'video' = each video's questions consecutive, so the per-video path runs ~4.9x less often
    #: on MUSIC-AVQA (pays off when that path, not per-step overhead, bounds the step time)
    sampler: Literal["question", "video"] = "question"
    num_threads: int = 0                #: torch CPU threads; 0 = leave torch's default
    deterministic: bool = False         #: torch.use_deterministic_algorithms (slower on CUDA)
    progress: bool = True               #: rich progress display (main rank only)
    stop_after: int = 0                 #: stop this invocation after epoch N (resume later); 0 = off
    memory_budget_mb: float = 0.0       #: device memory for resident arrays; 0 = auto
    prefetch: int = 2                   #: batches read ahead when streaming from HDF5
    ddp_find_unused: bool = False       #: DistributedDataParallel(find_unused_parameters=...)
    #: replay the training step and predictions from CUDA graphs (one CUDA device, resident data;
    #: eager elsewhere); same arithmetic as the eager step, other dropout draws
    cuda_graph: bool = True
    #: torch.compile inside the CUDA-graph step: "auto" = "regions" there for runs of >= 2,500
    #: steps (train.step.AUTO_COMPILE_STEPS), nothing on the eager step; "regions" = encoders,
    #: alignment, temporal blocks, fusion and head compiled one by one (right under bf16; 14.5k
    #: -> 19.6k QA/s at batch 64 on an H200); true = the whole model, which needs amp = off
    #: (under bf16 its gradients are wrong); false = off.  Compiling costs ~1.5 min the first
    #: time on a machine (inductor caches it on disk): docs/TRAINING.md
    compile: bool | Literal["auto", "regions"] = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
            (self.grad_clip >= 0, "grad_clip must be >= 0"),
            (self.align_weight >= 0, "align_weight must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.patience >= 0, "patience must be >= 0"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.num_threads >= 0, "num_threads must be >= 0"),
            (self.stop_after >= 0, "stop_after must be >= 0"),
            (self.memory_budget_mb >= 0, "memory_budget_mb must be >= 0"),
            (self.prefetch >= 1, "prefetch must be >= 1"),
            (self.compile is not True or self.amp == "off", COMPILE_NEEDS_FP32),
            ("/" not in self.name and self.name not in (".", "..", "latest"),
             f"name {self.name!r} must be a plain folder name other than 'latest'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


#: why compile = true is refused with autocast (measured on torch 2.11, H200; docs/TRAINING.md)
COMPILE_NEEDS_FP32 = (
    "compile = true needs amp = off: under bf16 autocast (amp = auto on CUDA, or bf16) the "
    "compiled training step gives wrong gradients from its second call on (torch 2.11, "
    "measured on an H200 with benchmarks/compile_check.py); set amp=off as well, use "
    "compile=regions (each region compiled on its own is right under bf16), or leave compile off")


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                      base: dict | None = None) -> TrainConfig:
    """Defaults <- ``base`` <- config file ``path`` <- ``overrides`` (``{"model.d_model": 64}``)."""
    return resolve(TrainConfig, path, overrides, base)


def config_dict(cfg: TrainConfig) -> dict:
    """The resolved config as plain JSON data (what ``config.json`` holds)."""
    return to_dict(cfg)


def resume_config(recorded: dict, overrides: dict[str, Any] | None) -> TrainConfig:
    """The config of a resumed run: the recorded one, with only :data:`RUNTIME_FIELDS` allowed to
    change.  Any other override that differs from the recorded value is an error naming it."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    # stop_after belongs to one invocation: a resumed run runs to the end unless told again
    cfg = resolve(TrainConfig, None, overrides, {**recorded, "stop_after": 0})
    rec = resolve(TrainConfig, None, None, recorded)
    for f in dataclasses.fields(TrainConfig):
        if f.name in RUNTIME_FIELDS:
            continue
        a, b = getattr(rec, f.name), getattr(cfg, f.name)
        if a != b:
            raise ConfigError(f"--resume: {f.name} differs from the run's recorded config "
                              f"(recorded {a!r}, given {b!r}); a resumed run keeps its config "
                              f"except {sorted(RUNTIME_FIELDS)}")
    return cfg
