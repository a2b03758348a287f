"""Stage two: training and evaluation from the feature store.

``train(cfg)`` runs (or, with ``resume``, continues) one run into ``runs/<name>/``;
``evaluate(run_dir, store, split)`` scores a checkpoint and writes its report; the scorer
(``score`` & co.) is the one ``python cli.py score`` uses.
"""
from .checkpoint import Checkpoint, CheckpointError, check_compatible, find_checkpoint, save_checkpoint
from .config import RUNTIME_FIELDS, TrainConfig, load_train_config, resume_config
from .data import Batch, DataError, StoreData, open_store, reference_batch, store_dims
from .distributed import DistContext, init_distributed
from .evaluate import StoreMismatchWarning, evaluate, records_for_rows, store_vocabulary
from .loop import RunResult, prepare_config, train
from .predict import Predictor, predict
from .runs import RunError, RunInterrupted, read_metrics, resolve_run_dir
from qa.scoring import (ScoringError, format_table, majority_baseline, read_predictions, score,
                      write_predictions)

__all__ = [
    "TrainConfig", "load_train_config", "resume_config", "RUNTIME_FIELDS",
    "train", "prepare_config", "RunResult", "predict", "Predictor",
    "evaluate", "StoreMismatchWarning", "records_for_rows", "store_vocabulary",
    "StoreData", "Batch", "open_store", "store_dims", "reference_batch", "DataError",
    "Checkpoint", "CheckpointError", "find_checkpoint", "save_checkpoint", "check_compatible",
    "DistContext", "init_distributed",
    "RunError", "RunInterrupted", "read_metrics", "resolve_run_dir",
    "score", "read_predictions", "write_predictions", "format_table", "majority_baseline",
    "ScoringError",
]
