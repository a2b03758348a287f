"""The extraction config: one typed dataclass, resolved defaults <- config file <- CLI overrides
with :func:`common.config.resolve`, and recorded in the store as ``attrs['extractor_config']``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.config import ConfigError, resolve

SAMPLING_MODES = ("truncate", "uniform")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: the audio encoder of a config that names none (a name in :mod:`extract.audio`'s registry)
DEFAULT_AUDIO_ENCODER = "vggish"
#: the audio reader of a config that names none (a name in :mod:`extract.audio_readers`)
DEFAULT_AUDIO_READER = "pyav"
#: the audio reader of stores whose recorded config has no ``audio_reader`` (made before it existed)
LEGACY_AUDIO_READER = "decord"


@dataclass
class ExtractConfig:
    """Everything ``python cli.py extract`` needs.  Field docs double as the CLI help."""

    #: folder searched (recursively) for videos: mp4, mkv, webm, avi, mov
    videos: str = ""
    #: annotation file or folder; empty = annotation files found under ``videos``
    annotations: str = ""
    #: entry file of the feature store (shards go to ``<out minus .h5>.shards/``)
    out: str = "feats.h5"
    #: segments per video
    T: int = 60
    #: segments per second (1 = one frame and one second of audio per segment)
    fps: float = 1.0
    #: videos longer than T segments: 'truncate' keeps the first T/fps seconds, 'uniform' spreads
    #: the T segment centres evenly over the whole video
    sampling: Literal["truncate", "uniform"] = "truncate"
    #: any open_clip model name (``open_clip.list_models()``)
    clip_model: str = "ViT-B-32"
    #: 'default' (open_clip 'openai' tag, from the cache or the network), an open_clip tag,
    #: a local weight file, 'random' (seeded with ``seed``) or 'random:<seed>'
    clip_weights: str = "default"
    #: audio encoder, a name in the registry (``extract.audio``; docs/EXTENDING.md)
    audio_encoder: str = DEFAULT_AUDIO_ENCODER
    #: 'default' (torchvggish release file, from the torch hub cache or the network), a local
    #: state_dict file, 'random' or 'random:<seed>'
    vggish_weights: str = "default"
    #: apply VGGish's PCA-whitening + 8-bit quantisation (AudioSet release format)
    vggish_postprocess: bool = False
    #: PCA parameters for ``vggish_postprocess``: 'default' (torchvggish release file) or a path
    vggish_pca: str = "default"
    #: how audio is decoded, a name in the registry (extract.audio_readers): 'pyav' (FFmpeg,
    #: resampled as one signal) or 'decord' (decord's AudioReader, which resamples each AAC frame
    #: on its own and so distorts audio it resamples; stores made before this option were read
    #: with it: pass 'decord' to resume one)
    audio_reader: str = DEFAULT_AUDIO_READER
    #: seed for 'random' weights
    seed: int = 0
    #: CLIP input size in pixels; 0 = the model's own
    image_size: int = 0
    #: token positions stored per question
    text_len: int = 32
    #: also store CLIP patch tokens [T, P, Dv] per video (large)
    patches: bool = False
    #: frames per encoder batch, gathered across videos (0 = auto: 256 on CUDA, 32 on the CPU,
    #: where smaller batches stay in cache and run faster)
    batch_size: int = 0
    #: questions (and options) per text-encoder batch
    text_batch_size: int = 256
    #: decode worker processes, each single-threaded (-1: one per usable core; 0 = decode in the
    #: main process).  With dask: decode threads per task (-1 = 2)
    workers: int = -1
    #: videos per shard (a crash loses at most the open shard)
    shard_size: int = 64
    #: questions per question shard
    question_shard_size: int = 8192
    #: 'auto' (CUDA when available), 'cpu' or 'cuda'
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: encoder precision: 'auto' = bf16 autocast where supported on CUDA, else fp16; on the CPU
    #: bf16 weights where the CPU has native bf16 (avx512_bf16/amx_bf16: ~1.9x CLIP), else
    #: float32 (docs/EXTRACTION.md); 'fp32' = float32 everywhere; 'bf16' on the CPU keeps the
    #: weights in bf16 even without native bf16 (slower there); fp16 is CUDA-only.  The store
    #: records what it resolved to as extractor_config.compute_precision
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    #: address of an existing dask.distributed scheduler (tcp://host:port)
    scheduler: str = ""
    #: start a dask LocalCluster with this many workers (0 = no dask, in-process)
    dask_workers: int = 0
    #: exit with a non-zero status when any video fails
    strict: bool = False
    #: only add questions to an existing store; decode no video
    questions_only: bool = False
    #: keep annotation records whose answer is not in the answer vocabulary (answer index -1)
    keep_unknown: bool = False
    #: only records of this split ('' = all)
    split: str = ""
    #: dataset whose answer vocabulary a store gets when no annotations are given (so questions
    #: can be added later with questions_only): a registered format, 'music-avqa' or 'avqa'
    dataset: str = "music-avqa"

    def __post_init__(self) -> None:
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")
        if not (self.fps > 0):
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("text_batch_size", "shard_size", "question_shard_size", "text_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < -1:
            raise ValueError(f"workers must be >= -1 (-1 = one per usable core), got {self.workers}")
        for name in ("batch_size", "dask_workers", "image_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self._check_registered()
        if self.scheduler and self.dask_workers:
            raise ValueError("give either scheduler or dask_workers, not both")
        if not self.out:
            raise ValueError("out must name the store's entry file (e.g. feats.h5)")
        if self.split not in ("", *SPLITS):   # the splits annotation file names can give
            raise ValueError(f"split must be one of {', '.join(SPLITS)} (or empty for all), got "
                             f"{self.split!r}")

    def _check_registered(self) -> None:
        """``audio_encoder``, ``audio_reader`` and ``dataset`` name registered entries."""
        # the registries load numpy and h5py: imported when a config is built, not with this
        # module, which cli.py (re-run by every spawned decode worker) reads for its options
        from qa.annotations import dataset_names

        from .audio import audio_encoder_names
        from .audio_readers import audio_reader_names

        if self.audio_encoder not in audio_encoder_names():
            raise ValueError(f"audio_encoder must be one of {', '.join(audio_encoder_names())}, "
                             f"got {self.audio_encoder!r}")
        if self.audio_reader not in audio_reader_names():
            raise ValueError(f"audio_reader must be one of {', '.join(audio_reader_names())}, "
                             f"got {self.audio_reader!r}")
        if self.dataset.strip().lower().replace("_", "-") not in dataset_names():
            raise ValueError(f"dataset must be one of {', '.join(dataset_names())} (the registered "
                             f"formats), got {self.dataset!r}")


#: the splits a question can have (read from the annotation file names)
SPLITS = ("train", "val", "test")

#: encoder batch (frames) when ``batch_size`` is 0, by device type.  On the 2-core CPU machine
#: ViT-B-32 ran 15 % faster per frame at 32 than at 256 (3.1 vs 3.7 s per 60 frames, fp32)
AUTO_BATCH_SIZE = {"cuda": 256, "cpu": 32}


def encoder_batch_size(cfg: Any, device_type: str | None = None) -> int:
    """Frames per encoder batch: ``cfg.batch_size``, or when 0 the device's default (the
    largest, 256, when the device is not known yet)."""
    if int(cfg.batch_size) > 0:
        return int(cfg.batch_size)
    return AUTO_BATCH_SIZE.get(device_type or "cuda", AUTO_BATCH_SIZE["cuda"])


def load_extract_config(path: str | Path | None = None,
                        overrides: dict[str, Any] | None = None) -> ExtractConfig:
    """Defaults <- ``path`` (TOML/YAML/JSON) <- ``overrides`` (``None`` values ignored)."""
    return resolve(ExtractConfig, path, overrides)


__all__ = ["ExtractConfig", "load_extract_config", "encoder_batch_size", "AUTO_BATCH_SIZE",
           "ConfigError", "SAMPLING_MODES", "DEFAULT_AUDIO_ENCODER",
           "DEFAULT_AUDIO_READER", "LEGACY_AUDIO_READER"]
