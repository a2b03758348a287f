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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
               signal: float = 1.5, seed: int = 0, dataset: str = "synthetic") -> GeneratedStore:
    """Write a store at ``path`` (``feats.h5``) in ``n_shards`` shards and return what was written.

    Videos are split by video: the first ``split_fractions[0]`` are train, the next
    ``split_fractions[1]`` val, the rest test.  Question ids are ``1000 + row``.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((n_answers, visual_dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    text_protos = rng.standard_normal((n_answers, text_dim)).astype(np.float32)

    vclass = rng.integers(0, n_answers, n_videos)
    visual = (signal * protos[vclass][:, None, :]
              + rng.standard_normal((n_videos, T, visual_dim)) * 0.5).astype(np.float16)
    audio = rng.standard_normal((n_videos, T, audio_dim)).astype(np.float16)
    audio_present = rng.random(n_videos) > 0.1
    audio[~audio_present] = 0
    video_ids = [f"vid{i:04d}" for i in range(n_videos)]
    label = np.argmax(visual.astype(np.float32).mean(1) @ protos.T, axis=1)

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
    sentence = rng.standard_normal((q, text_dim)).astype(np.float16)
    lengths = rng.integers(2, text_len + 1, q)
    token_mask = np.arange(text_len)[None, :] < lengths[:, None]
    tokens = (rng.standard_normal((q, text_len, text_dim)) * token_mask[..., None]).astype(np.float16)
    answer_vocab = [f"answer-{i}" for i in range(n_answers)]
    options = options_text = None
    if n_options:
        if n_options > n_answers:
            raise ValueError("n_options must be <= n_answers")
        opt_classes = np.stack([rng.permutation(n_answers)[:n_options] for _ in range(q)])
        correct_slot = rng.integers(0, n_options, q)
        for i in range(q):  # put the video's class at the correct slot
            c = label[qvid[i]]
            row = [x for x in opt_classes[i] if x != c][: n_options - 1]
            row.insert(int(correct_slot[i]), c)
            opt_classes[i] = row
        options = (text_protos[opt_classes]
                   + rng.standard_normal((q, n_options, text_dim)) * 0.1).astype(np.float16)
        options_text = np.array([[answer_vocab[c] for c in row] for row in opt_classes], dtype=object)
        answers = correct_slot.astype(np.int16)
    else:
        answers = label[qvid].astype(np.int16)
    splits = video_split[qvid]

    attrs = {"T": T, "fps": 1.0, "audio_dim": audio_dim, "visual_dim": visual_dim,
             "text_dim": text_dim, "text_len": text_len, "patches": 0, "n_options": n_options,
             "dataset": dataset, "answer_vocab": answer_vocab, "type_names": list(MUSIC_TYPES),
             "encoders": {"audio": {"name": "random", "weights": f"random:{seed}"},
                          "visual": {"name": "random", "weights": f"random:{seed}"},
                          "text": {"name": "random", "weights": f"random:{seed}"}},
             "extractor_config": {"generator": "tests/storegen.py", "seed": seed}}

    # videos and questions spread over the shards in global row order
    v_bounds = np.linspace(0, n_videos, n_shards + 1).astype(int)
    q_bounds = np.linspace(0, q, n_shards + 1).astype(int)
    for s in range(n_shards):
        v0, v1 = v_bounds[s], v_bounds[s + 1]
        q0, q1 = q_bounds[s], q_bounds[s + 1]
        w = ShardWriter(path, attrs)
        try:
            if v1 > v0:
                w.add_videos(video_ids[v0:v1], audio[v0:v1], audio_present[v0:v1], visual[v0:v1],
                             n_segments=np.full(v1 - v0, T, np.int32),
                             duration=np.full(v1 - v0, float(T), np.float32),
                             source_path=[f"/data/{v}.mp4" for v in video_ids[v0:v1]],
                             source_size=np.full(v1 - v0, 1000, np.int64),
                             source_mtime=np.full(v1 - v0, 1.7e9, np.float64))
            if q1 > q0:
                sl = slice(q0, q1)
                w.add_questions(qids[sl], [video_ids[i] for i in qvid[sl]], splits[sl].tolist(),
                                types[sl], answers[sl],
                                answer_texts=[answer_vocab[label[i]] for i in qvid[sl]],
                                texts=[f"question {i}" for i in qids[sl]], sentence=sentence[sl],
                                tokens=tokens[sl], token_mask=token_mask[sl],
                                options_text=None if options_text is None else options_text[sl],
                                options=None if options is None else options[sl])
        except BaseException:
            w.abort()
            raise
        w.close()
    rebuild_index(path)
    return GeneratedStore(path=path, attrs=attrs, video_ids=video_ids, audio=audio, visual=visual,
                          audio_present=audio_present, video_class=vclass, question_ids=qids,
                          question_video=qvid, splits=splits, types=types, answers=answers,
                          sentence=sentence, tokens=tokens, token_mask=token_mask, options=options)
