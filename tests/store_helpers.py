"""Small random store contents for the store tests (real HDF5 files, small arrays)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from store import ShardWriter


def make_attrs(T: int = 4, audio_dim: int = 8, visual_dim: int = 6, text_dim: int = 5, text_len: int = 3,
               patches: int = 0, n_options: int = 0, **over) -> dict:
    attrs = {
        "schema_version": 1, "T": T, "fps": 1.0, "audio_dim": audio_dim, "visual_dim": visual_dim,
        "text_dim": text_dim, "text_len": text_len, "patches": patches, "n_options": n_options,
        "dataset": "synthetic", "answer_vocab": ["yes", "no", "two", "left"],
        "type_names": ["Audio/Counting", "Visual/Location", "Audio-Visual/Existential"],
        "encoders": {"audio": {"name": "vggish", "weights": "random:0"},
                     "visual": {"name": "clip-vit-b32", "weights": "random:0"},
                     "text": {"name": "clip-vit-b32", "weights": "random:0"}},
        "extractor_config": {"segments": T, "workers": 1}, "package_version": "test",
    }
    attrs.update(over)
    return attrs


def video_batch(rng: np.random.Generator, ids: list[str], attrs: dict) -> dict:
    n, T = len(ids), attrs["T"]
    out = {
        "ids": list(ids),
        "audio": rng.standard_normal((n, T, attrs["audio_dim"])).astype(np.float16),
        "audio_present": rng.random(n) > 0.3,
        "visual": rng.standard_normal((n, T, attrs["visual_dim"])).astype(np.float16),
        "n_segments": rng.integers(1, T + 1, n).astype(np.int32),
        "duration": (rng.random(n) * 60).astype(np.float32),
        "source_path": [f"/data/videos/{i}.mp4" for i in ids],
        "source_size": rng.integers(1000, 10**9, n).astype(np.int64),
        "source_mtime": rng.random(n) * 1.7e9,
    }
    if attrs["patches"]:
        out["visual_patches"] = rng.standard_normal((n, T, attrs["patches"], attrs["visual_dim"])).astype(np.float16)
    return out


def question_batch(rng: np.random.Generator, qids: list[int], video_ids: list[str], attrs: dict) -> dict:
    m, L, Dt = len(qids), attrs["text_len"], attrs["text_dim"]
    out = {
        "ids": np.asarray(qids, dtype=np.int64),
        "video_ids": list(video_ids),
        "splits": [("train", "val", "test")[q % 3] for q in qids],
        "types": rng.integers(-1, len(attrs["type_names"]), m).astype(np.int16),
        "answers": rng.integers(-1, len(attrs["answer_vocab"]), m).astype(np.int16),
        "answer_texts": [f"answer {q} é" for q in qids],
        "texts": [f"How many instruments in video {v}? ({q})" for q, v in zip(qids, video_ids)],
        "sentence": rng.standard_normal((m, Dt)).astype(np.float16),
        "tokens": rng.standard_normal((m, L, Dt)).astype(np.float16),
        "token_mask": rng.random((m, L)) > 0.2,
    }
    if attrs["n_options"]:
        k = attrs["n_options"]
        out["options_text"] = [[f"option {j} of {q}" for j in range(k)] for q in qids]
        out["options"] = rng.standard_normal((m, k, Dt)).astype(np.float16)
    return out


def concat(batches: list[dict]) -> dict:
    """Column-wise concatenation of batches (the raw arrays the reader must reproduce)."""
    out = {}
    for k in batches[0]:
        vals = [b[k] for b in batches]
        if isinstance(vals[0], list):
            out[k] = np.asarray([x for v in vals for x in v], dtype=str)
        else:
            out[k] = np.concatenate(vals)
    return out


def write_shard(entry: Path, attrs: dict, videos: list[dict] = (), questions: list[dict] = (),
                failures: list[tuple[str, str]] = ()) -> Path:
    with ShardWriter(entry, attrs) as w:
        for v in videos:
            w.add_videos(**v)
        for q in questions:
            w.add_questions(**q)
        for p, e in failures:
            w.add_failure(p, e)
    return w.path


def write_videos_process(entry: str, prefix: str, n: int, seed: int, barrier=None) -> str:
    """Child-process body for the concurrent-writer test: write one video shard."""
    rng = np.random.default_rng(seed)
    attrs = make_attrs()
    if barrier is not None:
        barrier.wait()
    path = write_shard(Path(entry), attrs, videos=[video_batch(rng, [f"{prefix}{i}" for i in range(n)], attrs)])
    return path.name
