"""Encoding decoded videos and questions with the encoders, across videos in one batch, and the
store attributes that describe the encoders (:mod:`extract.pipeline` and the dask runner use
these alike)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from common.config import to_dict

from .config import ExtractConfig, encoder_batch_size
from .decode import DecodedVideo, DecodeSpec, decode_video, pad_to
from .discover import VideoFile
from .errors import ExtractError

if TYPE_CHECKING:  # torch is imported only when the encoders are built (after decoding started)
    from .encoders import Encoders


@dataclass
class EncodedVideo:
    """Features of one video, ready for :meth:`store.ShardWriter.add_videos`."""

    video: VideoFile
    audio: np.ndarray            # float32 [T, A], A = the audio encoder's width
    visual: np.ndarray           # float32 [T, Dv]
    patches: np.ndarray | None   # float32 [T, P, Dv]
    audio_present: bool
    n_segments: int
    duration: float


def options_count(records: Sequence[Any]) -> int:
    """K of a multiple-choice dataset (0 if no record has options); all must agree."""
    ks = {len(r.options) for r in records if r.options}
    if not ks:
        return 0
    if len(ks) > 1 or any(not r.options for r in records):
        counts = sorted({len(r.options) for r in records})
        raise ExtractError(f"questions have different numbers of answer options {counts}; the "
                           "store holds one K per store (n_options)")
    return ks.pop()


def store_attrs(cfg: ExtractConfig, enc: Encoders, vocab: Any, n_options: int) -> dict:
    """The store attributes (``store.schema.STORE_ATTRS``) of this run; ``extractor_config`` is
    the config with what this run resolved: the image size, and ``compute_precision`` (fp32,
    bf16 or fp16: what ``precision`` meant on this device) beside the ``precision`` setting."""
    from common.device import resolve_precision
    from store.attrs import package_version
    from store.schema import SCHEMA_VERSION

    resolved = to_dict(cfg)
    resolved["image_size"] = enc.clip.image_size
    resolved["compute_precision"] = resolve_precision(enc.clip.device, cfg.precision)
    return {
        "schema_version": SCHEMA_VERSION,
        "T": int(cfg.T),
        "fps": float(cfg.fps),
        "audio_dim": enc.audio_dim,
        "visual_dim": enc.clip.visual_dim,
        "text_dim": enc.clip.text_dim,
        "text_len": int(cfg.text_len),
        "patches": enc.clip.n_patches if cfg.patches else 0,
        "n_options": int(n_options),
        **vocab.to_attrs(),
        "encoders": enc.identities,
        "extractor_config": resolved,
        "package_version": package_version(),
    }


def random_weight_names(identities: dict) -> list[str]:
    return [f"{k} ({v['name']}: {v['weights']})" for k, v in identities.items()
            if str(v.get("weights", "")).startswith("random:")]


def check_audio_width(rows: np.ndarray, enc: Encoders) -> None:
    """The encoder's output must be as wide as its registry entry says (the store's audio_dim)."""
    if rows.ndim != 2 or rows.shape[1] != enc.audio_dim:
        raise ExtractError(f"audio encoder {enc.audio_entry.name!r} returned {rows.shape[1:]} "
                           f"per segment, but its registered width is {enc.audio_dim}")


def encode_videos(decoded: Sequence[tuple[VideoFile, DecodedVideo]], enc: Encoders,
                  cfg: ExtractConfig) -> list[EncodedVideo]:
    """Encode several decoded videos with batches of up to ``batch_size`` frames (see
    :func:`extract.config.encoder_batch_size`) that span video boundaries (the fast path;
    :func:`extract_video_reference` is the per-video one).  Only real segments are encoded;
    padding repeats the last real segment's embeddings."""
    if not decoded:
        return []
    real = [d.n_segments for _, d in decoded]
    frames = np.concatenate([d.frames[:n] for (_, d), n in zip(decoded, real)])
    bs = encoder_batch_size(cfg, enc.clip.device.type)
    vis, pat = [], []
    for lo in range(0, len(frames), bs):
        e, p = enc.clip.encode_images(frames[lo:lo + bs], patches=cfg.patches)
        vis.append(e)
        pat.append(p)
    visual = np.concatenate(vis)
    patches = np.concatenate(pat) if cfg.patches else None
    with_audio = [d.audio[:n] for (_, d), n in zip(decoded, real) if d.audio_present]
    audio_rows = np.zeros((0, enc.audio_dim), np.float32)
    if with_audio:
        mel = np.concatenate(with_audio)
        audio_rows = np.concatenate([enc.audio.encode(mel[lo:lo + bs])
                                     for lo in range(0, len(mel), bs)])
        check_audio_width(audio_rows, enc)
    out, at, aa = [], 0, 0
    for (vf, d), n in zip(decoded, real):
        if d.audio_present:
            audio = audio_rows[aa:aa + n]
            aa += n
        else:
            audio = np.zeros((n, enc.audio_dim), np.float32)
        out.append(EncodedVideo(vf, pad_to(audio, cfg.T), pad_to(visual[at:at + n], cfg.T),
                                None if patches is None else pad_to(patches[at:at + n], cfg.T),
                                d.audio_present, d.n_segments, d.duration))
        at += n
    return out


def encode_stream(decoded: Iterable[tuple[VideoFile, DecodedVideo | str]], enc: Encoders,
                  cfg: ExtractConfig) -> Iterator[tuple[VideoFile, EncodedVideo | str]]:
    """The encode stage: decoded videos (or their error messages) in, encoded videos (or the
    messages, passed on at once) out, encoded in batches of about ``batch_size`` frames across
    videos.  The in-process runner and the dask task both run it."""
    batch = encoder_batch_size(cfg, enc.clip.device.type)
    waiting: list[tuple[VideoFile, DecodedVideo]] = []
    for v, res in decoded:
        if isinstance(res, str):
            yield v, res
            continue
        waiting.append((v, res))
        if sum(len(d.frames) for _, d in waiting) >= batch:
            yield from ((ev.video, ev) for ev in encode_videos(waiting, enc, cfg))
            waiting = []
    yield from ((ev.video, ev) for ev in encode_videos(waiting, enc, cfg))


def extract_video_reference(video: VideoFile, cfg: ExtractConfig, enc: Encoders) -> EncodedVideo:
    """The slow reference: decode one video and encode all T segments of it alone (no
    cross-video batches, padding encoded rather than copied)."""
    spec = DecodeSpec.from_config(cfg, enc.clip.image_size)
    d = decode_video(video.path, spec)
    visual, patches = enc.clip.encode_images(d.frames, patches=cfg.patches)
    audio = enc.audio.encode(d.audio) if d.audio_present else \
        np.zeros((cfg.T, enc.audio_dim), np.float32)
    return EncodedVideo(video, audio, visual, patches, d.audio_present, d.n_segments, d.duration)


def encode_questions(records: Sequence[Any], enc: Encoders, cfg: ExtractConfig,
                     n_options: int) -> dict[str, Any]:
    """Columns for :meth:`store.ShardWriter.add_questions`, text encoded in batches; each
    distinct question or option text is encoded once (templates and options repeat a lot)."""
    texts = [r.text for r in records]
    bs = int(cfg.text_batch_size)
    uniq = list(dict.fromkeys(texts))
    sent, toks, masks = [], [], []
    for lo in range(0, len(uniq), bs):
        s, t, m = enc.clip.encode_text(uniq[lo:lo + bs])
        sent.append(s)
        toks.append(t)
        masks.append(m)
    dt, L = enc.clip.text_dim, int(cfg.text_len)
    pos_q = {u: k for k, u in enumerate(uniq)}
    at = np.asarray([pos_q[t] for t in texts], np.int64)
    cols: dict[str, Any] = {
        "ids": np.asarray([r.question_id for r in records], np.int64),
        "video_ids": [r.video_id for r in records],
        "splits": [r.split for r in records],
        "types": np.asarray([r.type_index for r in records], np.int16),
        "answers": np.asarray([r.answer_index for r in records], np.int16),
        "answer_texts": [r.answer for r in records],
        "texts": texts,
        "sentence": np.concatenate(sent)[at] if sent else np.zeros((0, dt), np.float32),
        "tokens": np.concatenate(toks)[at] if toks else np.zeros((0, L, dt), np.float32),
        "token_mask": np.concatenate(masks)[at] if masks else np.zeros((0, L), bool),
    }
    if n_options:
        flat = [o for r in records for o in r.options]
        uniq_o = list(dict.fromkeys(flat))
        emb = [enc.clip.encode_sentences(uniq_o[lo:lo + bs]) for lo in range(0, len(uniq_o), bs)]
        pos = {u: k for k, u in enumerate(uniq_o)}
        emb_arr = np.concatenate(emb)[[pos[o] for o in flat]] if emb else np.zeros((0, dt), np.float32)
        cols["options_text"] = np.asarray([list(r.options) for r in records], dtype=object) \
            .reshape(len(records), n_options)
        cols["options"] = emb_arr.reshape(len(records), n_options, dt)
    return cols
