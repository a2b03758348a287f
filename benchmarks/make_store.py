"""Write a MUSIC-AVQA-shaped feature store with random features through the real store writer.

Full size (the default): 9,288 videos x 60 segments, audio 128-d, visual 512-d (``--visual-dim 768``
for ViT-L-sized features), 45,867 questions with sentence + token embeddings, split sizes of the
corrected release (train 31,927 / val 4,568 / test 9,129; the remaining 243 questions, deleted in
that release, get the split ``unused``).  ``--scale 0.01`` makes a proportionally smaller store for
CPU smoke runs.  Question types and answers follow the real test-split distribution when the
annotation file is available, else a uniform draw.

    python benchmarks/make_store.py --out /tmp/bench/feats.h5 [--scale 1.0] [--visual-dim 512]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extract.audio import get_audio_encoder  # noqa: E402
from extract.config import DEFAULT_AUDIO_ENCODER  # noqa: E402
from qa.annotations import music_avqa_vocabulary  # noqa: E402
from store import ShardWriter, rebuild_index  # noqa: E402
from store.schema import SCHEMA_VERSION  # noqa: E402

#: the default audio encoder's width (VGGish: 128), as an extracted store has it
AUDIO_DIM = get_audio_encoder(DEFAULT_AUDIO_ENCODER).width

FULL_VIDEOS = 9288
FULL_SPLITS = {"train": 31927, "val": 4568, "test": 9129, "unused": 243}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="entry file to write (feats.h5)")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    ap.add_argument("--T", type=int, default=60, help="segments per video")
    ap.add_argument("--visual-dim", type=int, default=512, help="CLIP image embedding size")
    ap.add_argument("--text-dim", type=int, default=512, help="CLIP text embedding size")
    ap.add_argument("--text-len", type=int, default=32, help="token positions per question")
    ap.add_argument("--shard-videos", type=int, default=1024, help="videos per shard")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    vocab = music_avqa_vocabulary()
    n_videos = max(2, round(FULL_VIDEOS * args.scale))
    splits = {k: max(1, round(v * args.scale)) for k, v in FULL_SPLITS.items()}
    n_q = sum(splits.values())
    attrs = {
        "schema_version": SCHEMA_VERSION, "T": args.T, "fps": 1.0, "audio_dim": AUDIO_DIM,
        "visual_dim": args.visual_dim, "text_dim": args.text_dim, "text_len": args.text_len,
        "patches": 0, "n_options": 0, "dataset": "music-avqa-shaped-random",
        "answer_vocab": list(vocab.answers), "type_names": list(vocab.types),
        "encoders": {"audio": {"name": "random-features", "weights": f"random:{args.seed}"},
                     "visual": {"name": "random-features", "weights": f"random:{args.seed}"},
                     "text": {"name": "random-features", "weights": f"random:{args.seed}"}},
        "extractor_config": {"benchmark": "make_store", "scale": args.scale, "seed": args.seed},
        "package_version": "bench",
    }
    video_ids = np.array([f"{i:08d}" for i in range(n_videos)])
    # questions: ~4.9 per video, each split drawing its own videos
    q_video = rng.integers(0, n_videos, size=n_q)
    q_split = np.concatenate([np.full(n, k) for k, n in splits.items()])
    q_type = rng.integers(0, len(vocab.types), size=n_q).astype(np.int16)
    q_answer = rng.integers(0, len(vocab.answers), size=n_q).astype(np.int16)
    order = np.argsort(q_video, kind="stable")  # questions stored next to their videos' shard
    entry = Path(args.out)
    entry.parent.mkdir(parents=True, exist_ok=True)
    qpos = 0
    for start in range(0, n_videos, args.shard_videos):
        stop = min(start + args.shard_videos, n_videos)
        n = stop - start
        with ShardWriter(str(entry), attrs) as w:
            w.add_videos(
                ids=list(video_ids[start:stop]),
                audio=rng.standard_normal((n, args.T, AUDIO_DIM), dtype=np.float32).astype(np.float16),
                audio_present=np.ones(n, bool),
                visual=rng.standard_normal((n, args.T, args.visual_dim), dtype=np.float32).astype(np.float16),
                n_segments=np.full(n, args.T, np.int32), duration=np.full(n, float(args.T), np.float32),
                source_path=[f"random/{v}.mp4" for v in video_ids[start:stop]],
                source_size=np.zeros(n, np.int64), source_mtime=np.zeros(n, np.float64))
            qstop = qpos
            while qstop < n_q and q_video[order[qstop]] < stop:
                qstop += 1
            rows = order[qpos:qstop]
            m = len(rows)
            if m:
                mask = np.zeros((m, args.text_len), bool)
                lens = rng.integers(6, min(args.text_len, 24) + 1, size=m)
                mask[np.arange(args.text_len)[None, :] < lens[:, None]] = True
                w.add_questions(
                    ids=rows.astype(np.int64) + 1, video_ids=list(video_ids[q_video[rows]]),
                    splits=list(q_split[rows]), types=q_type[rows], answers=q_answer[rows],
                    answer_texts=[vocab.answers[a] for a in q_answer[rows]],
                    texts=[f"random question {r}" for r in rows],
                    sentence=rng.standard_normal((m, args.text_dim), dtype=np.float32).astype(np.float16),
                    tokens=rng.standard_normal((m, args.text_len, args.text_dim), dtype=np.float32).astype(np.float16),
                    token_mask=mask)
            qpos = qstop
    rebuild_index(str(entry))
    out = {"path": str(entry), "videos": n_videos, "questions": n_q, "splits": splits,
           "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
