"""store_info: a summary of a store, the object ``store info --json`` prints."""
from __future__ import annotations

import os

import numpy as np

from .errors import StoreError
from .index import read_index, read_shard_summary
from .layout import complete_shards, entry_of
from .reader import FeatureStore


def unindexed_shards(entry_path: str | os.PathLike) -> dict:
    """The complete shards the entry file does not list yet (an extraction is running or was
    interrupted): how many, and their videos, questions and failures."""
    entry = entry_of(entry_path)
    listed = set(read_index(entry).shard) if entry.is_file() else set()
    out = {"shards": 0, "videos": 0, "questions": 0, "failures": 0}
    for path in complete_shards(entry):
        if path.name in listed:
            continue
        try:
            s = read_shard_summary(path)
        except StoreError:    # renamed away or damaged meanwhile: store verify reports it
            continue
        out["shards"] += 1
        out["videos"] += len(s.video_id)
        out["questions"] += len(s.question_id)
        out["failures"] += len(s.failure_path)
    return out


def store_info(entry_path: str | os.PathLike) -> dict:
    """Counts, dimensions, encoders, dataset, failures and fingerprint of a store, and
    ``not_yet_indexed`` (:func:`unindexed_shards`) when complete shards are not in the index;
    a store whose first extraction is still running has only the latter."""
    pending = unindexed_shards(entry_path)
    if pending["shards"] and not entry_of(entry_path).exists():
        return {"path": str(entry_of(entry_path)), "videos": 0, "questions": 0,
                "not_yet_indexed": pending}
    info = _indexed_info(entry_path)
    if pending["shards"]:
        info["not_yet_indexed"] = pending
    return info


def _indexed_info(entry_path: str | os.PathLike) -> dict:
    with FeatureStore(entry_path) as fs:
        a = fs.attrs
        splits, counts = (np.unique(fs.questions("split"), return_counts=True) if fs.n_questions
                          else (np.zeros(0, str), np.zeros(0, int)))
        without_audio = int((~fs.videos("audio_present")).sum()) if fs.n_videos else 0
        return {
            "path": str(fs.path),
            "schema_version": int(a["schema_version"]),
            "videos": fs.n_videos,
            "questions": fs.n_questions,
            "segments": int(a["T"]),
            "fps": float(a["fps"]),
            "audio_dim": int(a["audio_dim"]),
            "visual_dim": int(a["visual_dim"]),
            "text_dim": int(a["text_dim"]),
            "text_len": int(a["text_len"]),
            "patches": int(a["patches"]),
            "n_options": int(a["n_options"]),
            "shards": len(fs.shards),
            "videos_without_audio": without_audio,
            "questions_without_video": int((fs.question_video_row < 0).sum()),
            "questions_per_split": {str(s): int(c) for s, c in zip(splits.tolist(), counts.tolist())},
            "answers": len(a["answer_vocab"]),
            "types": len(a["type_names"]),
            "encoders": a["encoders"],
            "dataset": a["dataset"],
            "package_version": a.get("package_version"),
            "failures": fs.failures,
            "fingerprint": fs.identity()["fingerprint"],
        }
