"""Small random feature stores for tests, written through the real store writer.

Answers depend on the features, so a model can learn them: every video has a hidden class ``c``;
its visual frames are ``signal * proto[c] + noise``, and every question about it has the answer
``argmax(mean visual @ proto.T)`` (equal to ``c`` for all but the noisiest videos).  For a
multiple-choice store (``n_options > 0``) the options are text embeddings of ``K`` different
classes and the answer is the option of the video's class.

:func:`make_store` returns the raw arrays it wrote (:class:`GeneratedStore`), so tests can check
what the reader and the training data give back against the source of truth.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.index import rebuild_index
from store.writer import ShardWriter

MUSIC_TYPES = ["Audio/Counting", "Audio/Comparative", "Visual/Counting", "Visual/Location",
               "Audio-Visual/Existential", "Audio-Visual/Counting", "Audio-Visual/Location",
               "Audio-Visual/Comparative", "Audio-Visual/Temporal"]


@dataclass
class GeneratedStore:
    """The store's entry path and, in global row order, everything written to it."""

    path: Path
    attrs: dict
    video_ids: list[str]
    audio: np.ndarray          # [V, T, A] float16
    visual: np.ndarray         # [V, T, Dv] float16
    audio_present: np.ndarray  # [V] bool
    video_class: np.ndarray    # [V]
    question_ids: np.ndarray   # [Q] int64
    question_video: np.ndarray  # [Q] global video row
    splits: np.ndarray         # [Q] str
    types: np.ndarray          # [Q] int16
    answers: np.ndarray        # [Q] int16
    sentence: np.ndarray       # [Q, Dt] float16
    tokens: np.ndarray         # [Q, L, Dt] float16
    token_mask: np.ndarray     # [Q, L] bool
    options: np.ndarray | None  # [Q, K, Dt] float16


def make_store(path: str | Path, *, n_videos: int = 40, T: int = 8, audio_dim: int = 128,
               visual_dim: int = 32, text_dim: int = 32, text_len: int = 6, n_answers: int = 6,
               questions_per_video: tuple[int, int] = (2, 6), n_options: int = 0,
               split_fractions: tuple[float, float] = (0.6, 0.2), n_shards: int = 2,
               signal: float = 1.5, seed: int = 0, dataset: str = "synthetic",
               keep_arrays: bool = True) -> GeneratedStore | Path:
    """Write a store at ``path`` (``feats.h5``) in ``n_shards`` shards and return what was written
    (or only the path, with ``keep_arrays=False``: large stores are generated shard by shard).

    Videos are split by video: the first ``split_fractions[0]`` are train, the next
    ``split_fractions[1]`` val, the rest test.  Question ids are ``1000 + row``.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((n_answers, visual_dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    text_protos = rng.standard_normal((n_answers, text_dim)).astype(np.float32)

    # small per-video / per-question facts, for the whole store
    vclass = rng.integers(0, n_answers, n_videos)
    audio_present = rng.random(n_videos) > 0.1
    video_ids = [f"vid{i:06d}" for i in range(n_videos)]
    n_train = int(round(split_fractions[0] * n_videos))
    n_val = int(round(split_fractions[1] * n_videos))
    video_split = np.array(["train"] * n_train + ["val"] * n_val
                           + ["test"] * (n_videos - n_train - n_val))
    counts = rng.integers(questions_per_video[0], questions_per_video[1] + 1, n_videos)
    qvid = np.repeat(np.arange(n_videos), counts)
    rng.shuffle(qvid)
    q = len(qvid)
    qids = np.arange(1000, 1000 + q, dtype=np.int64)
    types = rng.integers(0, len(MUSIC_TYPES), q).astype(np.int16)
    lengths = rng.integers(2, text_len + 1, q)
    splits = video_split[qvid]
    answer_vocab = [f"answer-{i}" for i in range(n_answers)]
    attrs = {"T": T, "fps": 1.0, "audio_dim": audio_dim, "visual_dim": visual_dim,
             "text_dim": text_dim, "text_len": text_len, "patches": 0, "n_options": n_options,
             "dataset": dataset, "answer_vocab": answer_vocab, "type_names": list(MUSIC_TYPES),
             "encoders": {"audio": {"name": "random", "weights": f"random:{seed}"},
                          "visual": {"name": "random", "weights": f"random:{seed}"},
                          "text": {"name": "random", "weights": f"random:{seed}"}},
             "extractor_config": {"generator": "tests/storegen.py", "seed": seed}}
    if n_options > n_answers:
        raise ValueError("n_options must be <= n_answers")

    # big arrays, shard by shard (videos and questions spread over the shards in row order)
    v_bounds = np.linspace(0, n_videos, n_shards + 1).astype(int)
    q_bounds = np.linspace(0, q, n_shards + 1).astype(int)
    label = np.zeros(n_videos, dtype=np.int64)
    kept: dict[str, list[np.ndarray]] = {k: [] for k in ("audio", "visual", "sentence", "tokens",
                                                         "token_mask", "options", "answers")}
    for s in range(n_shards):
        srng = np.random.default_rng([seed, s])
        v0, v1 = v_bounds[s], v_bounds[s + 1]
        nv = v1 - v0
        visual = (signal * protos[vclass[v0:v1]][:, None, :]
                  + srng.standard_normal((nv, T, visual_dim), dtype=np.float32) * 0.5
                  ).astype(np.float16)
        audio = srng.standard_normal((nv, T, audio_dim), dtype=np.float32).astype(np.float16)
        audio[~audio_present[v0:v1]] = 0
        label[v0:v1] = np.argmax(visual.astype(np.float32).mean(1) @ protos.T, axis=1)
        w = ShardWriter(path, attrs)
        try:
            if nv:
                w.add_videos(video_ids[v0:v1], audio, audio_present[v0:v1], visual,
                             n_segments=np.full(nv, T, np.int32),
                             duration=np.full(nv, float(T), np.float32),
                             source_path=[f"/data/{v}.mp4" for v in video_ids[v0:v1]],
                             source_size=np.full(nv, 1000, np.int64),
                             source_mtime=np.full(nv, 1.7e9, np.float64))
            w.close()
        except BaseException:
            w.abort()
            raise
        if keep_arrays:
            kept["audio"].append(audio)
            kept["visual"].append(visual)
    for s in range(n_shards):   # questions after all videos: their labels need every video
        srng = np.random.default_rng([seed, s, 1])
        q0, q1 = q_bounds[s], q_bounds[s + 1]
        nq = q1 - q0
        sl = slice(q0, q1)
        sentence = srng.standard_normal((nq, text_dim), dtype=np.float32).astype(np.float16)
        token_mask = np.arange(text_len)[None, :] < lengths[sl, None]
        tokens = (srng.standard_normal((nq, text_len, text_dim), dtype=np.float32)
                  * token_mask[..., None]).astype(np.float16)
        options = options_text = None
        if n_options:
            opt_classes = np.zeros((nq, n_options), dtype=np.int64)
            correct_slot = srng.integers(0, n_options, nq)
            for i in range(nq):  # the video's class at the correct slot, other classes elsewhere
                c = label[qvid[q0 + i]]
                row = [x for x in srng.permutation(n_answers) if x != c][: n_options - 1]
                row.insert(int(correct_slot[i]), c)
                opt_classes[i] = row
            options = (text_protos[opt_classes]
                       + srng.standard_normal((nq, n_options, text_dim)) * 0.1).astype(np.float16)
            options_text = np.array([[answer_vocab[c] for c in row] for row in opt_classes],
                                    dtype=object)
            answers = correct_slot.astype(np.int16)
        else:
            answers = label[qvid[sl]].astype(np.int16)
        w = ShardWriter(path, attrs)
        try:
            if nq:
                w.add_questions(qids[sl], [video_ids[i] for i in qvid[sl]], splits[sl].tolist(),
                                types[sl], answers,
                                answer_texts=[answer_vocab[label[i]] for i in qvid[sl]],
                                texts=[f"question {i}" for i in qids[sl]], sentence=sentence,
                                tokens=tokens, token_mask=token_mask, options_text=options_text,
                                options=options)
            w.close()
        except BaseException:
            w.abort()
            raise
        if keep_arrays:
            for k, v in (("sentence", sentence), ("tokens", tokens), ("token_mask", token_mask),
                         ("options", options), ("answers", answers)):
                kept[k].append(v)
    rebuild_index(path)
    if not keep_arrays:
        return path

    def cat(k):
        return None if not kept[k] or kept[k][0] is None else np.concatenate(kept[k])

    return GeneratedStore(path=path, attrs=attrs, video_ids=video_ids, audio=cat("audio"),
                          visual=cat("visual"), audio_present=audio_present, video_class=vclass,
                          question_ids=qids, question_video=qvid, splits=splits, types=types,
                          answers=cat("answers"), sentence=cat("sentence"), tokens=cat("tokens"),
                          token_mask=cat("token_mask"), options=cat("options"))


def main(argv: list[str] | None = None) -> None:
    """``python tests/storegen.py OUT.h5 [--music-avqa]``: write a random store (a
    MUSIC-AVQA-shaped one with ``--music-avqa``: 9,288 videos x 60 s, VGGish 128 / CLIP 512,
    77 tokens, 42 answers, ~4.9 questions per video) for benchmarks and GPU runs."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("out", help="entry file to write (feats.h5); must not exist")
    ap.add_argument("--music-avqa", action="store_true", help="MUSIC-AVQA-shaped sizes")
    ap.add_argument("--videos", type=int, default=None, help="number of videos")
    ap.add_argument("--shards", type=int, default=16, help="shards to write")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    args = ap.parse_args(argv)
    kw: dict = {}
    if args.music_avqa:
        kw = dict(n_videos=9288, T=60, audio_dim=128, visual_dim=512, text_dim=512, text_len=77,
                  n_answers=42, questions_per_video=(2, 8), split_fractions=(0.7, 0.1),
                  dataset="music-avqa-shaped")
    if args.videos:
        kw["n_videos"] = args.videos
    t = time.perf_counter()
    make_store(args.out, n_shards=args.shards, seed=args.seed, keep_arrays=False, **kw)
    print(f"wrote {args.out} in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
