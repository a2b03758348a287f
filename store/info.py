"""store_info: a summary of a store, the object ``store info --json`` prints."""
from __future__ import annotations

import os

import numpy as np

from .reader import FeatureStore


def store_info(entry_path: str | os.PathLike) -> dict:
    """Counts, dimensions, encoders, dataset, failures and fingerprint of a store."""
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
