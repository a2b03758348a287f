"""Import published per-video feature files (MUSIC-AVQA release) into a normal feature store.

The MUSIC-AVQA authors released one ``<video_id>.npy`` per video and feature, float32: VGGish
``[60, 128]`` and visual (ResNet-18 frames or R(2+1)D clips) ``[T, 512]`` with T varying per
video.  :func:`import_features` writes them into the store schema of :mod:`store.schema`, through
the same shard writer, lock and index code as extraction (:func:`extract.pipeline.write_shard`):

* rows are padded/truncated to the store's T like extracted ones (:func:`extract.decode.pad_to`:
  keep the first T, repeat the last real row); ``n_segments`` = the true visual rows, at most T;
* questions are encoded with CLIP's text encoder by :func:`extract.pipeline.encode_questions`;
* ``attrs['encoders']`` names the source: ``{"name": "imported:<name>", "weights":
  "sha256:<digest of the folder's files>"}``, so ``store info`` shows where features came from;
* a bad file (unreadable, wrong shape, NaN/inf, an id in one folder only) is a recorded failure;
* resume: videos already in the store are skipped; the lock refuses a second writer.  The
  digest covers every ``.npy`` file of the folder, so adding or changing files gives another
  identity, and the store refuses it (write a new store with ``--out``).  docs/IMPORT.md says why.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from common.config import resolve, to_dict
from qa.annotations import load_annotations, stored_vocabulary
from store import FeatureStore, StoreLock, rebuild_index
from store.layout import complete_shards, temp_files
from store.schema import check_video_id

from .config import ExtractConfig
from .decode import pad_to
from .discover import VideoFile
from .encode import EncodedVideo, options_count, random_weight_names, store_attrs
from .errors import ExtractError
from .pipeline import ExtractSummary, LocalRunner, pending_questions
from .shards import ChunkResult, write_shard
from .weights import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSource:
    """A published per-video feature: its embedding size and, when fixed, its number of rows."""

    name: str
    dim: int
    rows: int | None = None   # None: varies per video (one row per second of video)
    about: str = ""


#: feature kinds of the MUSIC-AVQA release (GeWu-Lab/MUSIC-AVQA, ``net_grd_avst``)
AUDIO_SOURCES: dict[str, FeatureSource] = {
    "vggish": FeatureSource("vggish", 128, 60, "TensorFlow VGGish, 1 s per row, no PCA"),
}
VISUAL_SOURCES: dict[str, FeatureSource] = {
    "resnet18": FeatureSource("resnet18", 512, None, "ResNet-18 pooled frame features, 1 fps"),
    "r2plus1d": FeatureSource("r2plus1d", 512, None, "R(2+1)D-18 clip features, 1 per second"),
}


@dataclass
class ImportConfig:
    """Everything ``python cli.py import-features`` needs (one config source)."""

    #: folder of ``<video_id>.npy`` audio features
    audio: str = ""
    #: folder of ``<video_id>.npy`` visual features
    visual: str = ""
    #: MUSIC-AVQA / AVQA annotation file or folder
    annotations: str = ""
    #: entry file of the feature store
    out: str = "feats.h5"
    #: audio feature kind (a key of AUDIO_SOURCES)
    audio_name: str = "vggish"
    #: visual feature kind (a key of VISUAL_SOURCES)
    visual_name: str = "resnet18"
    #: segments per video stored (the release has 60 one-second rows)
    T: int = 60
    #: segments per second of the released features
    fps: float = 1.0
    #: open_clip model for the question text (as ``extract --clip-model``)
    clip_model: str = "ViT-B-32"
    #: CLIP weights (as ``extract --clip-weights``)
    clip_weights: str = "default"
    #: seed of 'random' weights
    seed: int = 0
    #: token positions stored per question
    text_len: int = 32
    #: questions per text-encoder batch
    text_batch_size: int = 256
    #: videos per shard
    shard_size: int = 64
    #: questions per question shard
    question_shard_size: int = 8192
    #: 'auto', 'cpu' or 'cuda' for the text encoder
    device: str = "auto"
    #: text encoder precision (as extract's --precision: 'auto' = bf16 on CUDA and on CPUs with
    #: native bf16, else float32; 'fp32' = float32)
    precision: str = "auto"
    #: keep questions whose answer/type is outside the vocabulary (index -1)
    keep_unknown: bool = False
    #: only questions of this split ('' = all)
    split: str = ""

    def __post_init__(self) -> None:
        if self.audio_name not in AUDIO_SOURCES:
            raise ValueError(f"audio_name must be one of {sorted(AUDIO_SOURCES)}, got {self.audio_name!r}")
        if self.visual_name not in VISUAL_SOURCES:
            raise ValueError(f"visual_name must be one of {sorted(VISUAL_SOURCES)}, "
                             f"got {self.visual_name!r}")
        for name in ("shard_size", "question_shard_size", "T"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def text_config(self) -> ExtractConfig:
        """The extraction config whose CLIP text settings this import uses (same encoder code)."""
        return ExtractConfig(out=self.out, T=self.T, fps=self.fps, clip_model=self.clip_model,
                             clip_weights=self.clip_weights, seed=self.seed, text_len=self.text_len,
                             text_batch_size=self.text_batch_size, device=self.device,
                             precision=self.precision, question_shard_size=self.question_shard_size,
                             keep_unknown=self.keep_unknown, split=self.split,
                             annotations=self.annotations)


def load_import_config(path: str | None = None, overrides: dict | None = None) -> ImportConfig:
    """Defaults <- ``path`` (TOML/YAML/JSON) <- ``overrides`` (``None`` values ignored)."""
    return resolve(ImportConfig, path, overrides)


# ---- the input files -------------------------------------------------------------------------


def list_features(folder: str | Path) -> dict[str, Path]:
    """``video_id -> path`` of the ``*.npy`` files directly in ``folder``."""
    d = Path(folder)
    if not d.is_dir():
        raise ExtractError(f"{folder}: not a folder of <video_id>.npy feature files")
    return {p.stem: p for p in sorted(d.iterdir()) if p.suffix == ".npy" and p.is_file()}


def folder_digest(files: dict[str, Path]) -> str:
    """sha256 over ``name NUL sha256(file)`` of every file, in name order: names the features."""
    h = hashlib.sha256()
    for vid in sorted(files):
        h.update(f"{vid}.npy\0{sha256_file(files[vid])}\n".encode("utf-8", "backslashreplace"))
    return h.hexdigest()


def load_feature(path: Path, source: FeatureSource) -> np.ndarray:
    """One feature file as float32 ``[rows, dim]``; ``ValueError`` saying what is wrong."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ... for bad files
        raise ValueError(f"unreadable .npy file ({type(exc).__name__}: {exc})") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{source.name}: dtype {arr.dtype}, expected float32")
    if arr.ndim != 2 or arr.shape[1] != source.dim or arr.shape[0] < 1 or \
            (source.rows is not None and arr.shape[0] != source.rows):
        rows = source.rows if source.rows is not None else "T"
        raise ValueError(f"{source.name}: shape {list(arr.shape)}, expected [{rows}, {source.dim}]")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{source.name}: holds NaN or infinite values")
    return arr


def encode_pair(vid: str, audio_path: Path, visual_path: Path, cfg: ImportConfig) -> EncodedVideo:
    """The store row of one video; ``ValueError`` naming the bad file."""
    check_video_id(vid)
    loaded = []
    for path, source in ((audio_path, AUDIO_SOURCES[cfg.audio_name]),
                         (visual_path, VISUAL_SOURCES[cfg.visual_name])):
        try:
            loaded.append(load_feature(path, source))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    audio, visual = loaded
    a_st, v_st = audio_path.stat(), visual_path.stat()
    # the release has no audio flag; all-zero rows are what a silent track gives after padding
    present = bool(np.any(audio))
    n = min(visual.shape[0], int(cfg.T))
    src = VideoFile(vid, str(visual_path), a_st.st_size + v_st.st_size, max(a_st.st_mtime, v_st.st_mtime))
    return EncodedVideo(src, pad_to(audio, cfg.T), pad_to(visual, cfg.T), None, present, n,
                        float(visual.shape[0]) / float(cfg.fps))


def pair_inputs(audio: dict[str, Path], visual: dict[str, Path], cfg: ImportConfig
                ) -> tuple[list[str], list[tuple[str, str]]]:
    """Ids present in both folders, and failures for ids present in one only."""
    both = sorted(set(audio) & set(visual))
    failures = [(str(audio[v]), f"{audio[v]}: no visual features {v}.npy in {cfg.visual}")
                for v in sorted(set(audio) - set(visual))]
    failures += [(str(visual[v]), f"{visual[v]}: no audio features {v}.npy in {cfg.audio}")
                 for v in sorted(set(visual) - set(audio))]
    return both, failures


def iter_chunks(ids: Sequence[str], audio: dict[str, Path], visual: dict[str, Path],
                cfg: ImportConfig) -> Iterator[tuple[list[EncodedVideo], list[tuple[str, str]]]]:
    """Shard-sized chunks of (rows, failures), reading the files as they are needed."""
    rows: list[EncodedVideo] = []
    failures: list[tuple[str, str]] = []
    for vid in ids:
        try:
            rows.append(encode_pair(vid, audio[vid], visual[vid], cfg))
        except ValueError as exc:
            failures.append((str(visual[vid]), str(exc)))
        if len(rows) >= cfg.shard_size:
            yield rows, failures
            rows, failures = [], []
    if rows or failures:
        yield rows, failures


# ---- the run ---------------------------------------------------------------------------------


def import_attrs(cfg: ImportConfig, enc: Any, vocab: Any, n_options: int,
                 digests: dict[str, tuple[str, int]]) -> dict:
    """Store attributes: those of an extraction with this text encoder, with the imported
    features' dims and identities."""
    attrs = store_attrs(cfg.text_config(), enc, vocab, n_options)
    attrs["visual_dim"] = VISUAL_SOURCES[cfg.visual_name].dim
    attrs["audio_dim"] = AUDIO_SOURCES[cfg.audio_name].dim
    attrs["encoders"] = {
        "audio": {"name": f"imported:{cfg.audio_name}", "weights": f"sha256:{digests['audio'][0]}",
                  "files": digests["audio"][1]},
        "visual": {"name": f"imported:{cfg.visual_name}", "weights": f"sha256:{digests['visual'][0]}",
                   "files": digests["visual"][1]},
        "text": enc.identities["text"],
    }
    attrs["extractor_config"] = {"imported": to_dict(cfg)}
    return attrs


def _records(cfg: ImportConfig, store_vocab: Any) -> tuple[list, Any]:
    if not cfg.annotations:
        raise ExtractError("--annotations is required (the questions to encode)")
    kwargs: dict[str, Any] = {"keep_unknown": cfg.keep_unknown}
    if store_vocab is not None:
        kwargs["vocabulary"] = store_vocab
    records, vocab = load_annotations(cfg.annotations, **kwargs)
    if cfg.split:
        records = [r for r in records if r.split == cfg.split]
    return records, vocab


def _check_compatible(attrs: dict, existing: dict, entry: Path) -> None:
    from store.attrs import attr_differences

    diff = attr_differences(attrs, existing)
    if diff:
        k = diff[0]
        hint = " (the feature files differ from those the store was imported from)" \
            if k == "encoders" else ""
        raise ExtractError(f"the store {entry} was made with different settings: {k!r} is "
                           f"{existing.get(k)!r} there but {attrs.get(k)!r} now{hint}; use the "
                           "store's inputs and settings or write a new store with --out")


def _add_questions(records: list, entry: Path, attrs: dict, enc: Any, cfg: ImportConfig,
                   summary: ExtractSummary) -> None:
    """Encode and write the questions whose video is in the store and which are not yet there,
    as extraction does (:class:`extract.pipeline.LocalRunner`)."""
    def on_result(r: ChunkResult) -> None:
        summary.shards_written += 1
        summary.questions_added += r.questions

    pending = pending_questions(entry, records, summary)
    if pending:
        LocalRunner(cfg.text_config(), enc).run_questions(pending, attrs, entry, on_result)
        rebuild_index(entry)


def _existing(entry: Path) -> tuple[dict | None, set[str], Any]:
    """Attributes, video ids and answer vocabulary of the store at ``entry`` (None, {}, None
    when there is none yet); temp files of crashed writers are removed (the lock is held)."""
    for t in temp_files(entry):
        t.unlink(missing_ok=True)
    if complete_shards(entry):
        rebuild_index(entry)
    if not entry.exists():
        return None, set(), None
    with FeatureStore(entry) as fs:
        attrs, have = dict(fs.attrs), set(fs.video_ids.tolist())
    vocab = stored_vocabulary(attrs)
    return attrs, have, vocab


def _write_videos(ids: list[str], unpaired: list[tuple[str, str]], files: tuple[dict, dict],
                  cfg: ImportConfig, attrs: dict, summary: ExtractSummary,
                  progress: Callable[[int, int], None] | None) -> None:
    entry, done, pending = Path(cfg.out), 0, list(unpaired)
    for rows, failures in iter_chunks(ids, files[0], files[1], cfg):
        res = write_shard(entry, attrs, videos=rows, failures=pending + failures)
        pending = []
        summary.shards_written += 1
        summary.videos_extracted += res.videos
        summary.failures.extend(res.failures)
        done += len(rows) + len(failures)
        if progress:
            progress(done, len(ids))
    if pending:
        summary.failures.extend(write_shard(entry, attrs, failures=pending).failures)
        summary.shards_written += 1


def import_features(cfg: ImportConfig, progress: Callable[[int, int], None] | None = None
                    ) -> ExtractSummary:
    """Import the feature folders of ``cfg`` into ``cfg.out`` (see the module doc).
    ``progress(done, total)`` is called after each shard-sized chunk of videos."""
    from .encoders import get_encoders   # torch + open_clip: only when importing

    t0 = time.monotonic()
    entry = Path(cfg.out)
    summary = ExtractSummary(out=str(entry), runner="import")
    audio, visual = list_features(cfg.audio), list_features(cfg.visual)
    if not audio and not visual:
        raise ExtractError(f"nothing to import: no .npy files in {cfg.audio} or {cfg.visual}")
    ids, unpaired = pair_inputs(audio, visual, cfg)
    summary.videos_found = len(ids) + len(unpaired)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with StoreLock(entry):
        existing, have, store_vocab = _existing(entry)
        records, vocab = _records(cfg, store_vocab)
        summary.questions_found = len(records)
        digests = {"audio": (folder_digest(audio), len(audio)),
                   "visual": (folder_digest(visual), len(visual))}
        enc = get_encoders(cfg.text_config(), audio=False)
        attrs = import_attrs(cfg, enc, vocab, options_count(records), digests)
        if existing is not None:
            _check_compatible(attrs, existing, entry)
            summary.videos_skipped = sum(1 for v in ids if v in have)
            ids = [v for v in ids if v not in have]
        summary.encoders = attrs["encoders"]
        summary.random_weights = random_weight_names({"text": attrs["encoders"]["text"]})
        _write_videos(ids, unpaired, (audio, visual), cfg, attrs, summary, progress)
        if complete_shards(entry):
            rebuild_index(entry)
        if records and entry.exists():
            _add_questions(records, entry, attrs, enc, cfg, summary)
        if entry.exists():
            with FeatureStore(entry) as fs:
                summary.store_videos, summary.store_questions = fs.n_videos, fs.n_questions
    summary.seconds = time.monotonic() - t0
    return summary


__all__ = ["ImportConfig", "load_import_config", "import_features", "AUDIO_SOURCES",
           "VISUAL_SOURCES", "FeatureSource", "load_feature", "folder_digest"]
