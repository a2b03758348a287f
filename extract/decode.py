"""Decode one video into encoder inputs: T RGB frames (resized on decode, centre-cropped) and T
audio inputs from the audio encoder's front end (VGGish: log-mel patches; see
:mod:`extract.audio`).  Pure CPU, no torch model: runs in decode worker processes.

Segments
--------
Segment ``i`` covers ``[i / fps, (i + 1) / fps)`` seconds.  Its frame is the one shown at the
segment's centre; its audio input is what the front end makes of the mono audio (at the front
end's sample rate, read by the configured :mod:`extract.audio_readers` entry) around that centre
(VGGish: the one second centred on it, turned into one 96x64 log-mel patch as
``torchvggish.vggish_input.waveform_to_examples`` does).

* A segment is *real* when its centre lies inside the video; ``n_segments`` counts them (at least
  1 whenever a frame decodes, so a 0.3 s clip gives one real segment).
* Shorter than T segments: the remaining segments repeat the last real one (frame and audio
  input), the published MUSIC-AVQA convention.
* Longer than T segments: ``sampling='truncate'`` (default) keeps the first T segments;
  ``sampling='uniform'`` places T segment centres evenly over the whole video
  (centre ``i`` at ``(i + 0.5) * duration / T``) and takes the frame and the audio there.
* No audio stream: zero audio inputs and ``audio_present = False`` (not a failure).  Anything
  else that cannot be decoded raises :class:`DecodeError` with the reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import AudioFrontEnd, get_audio_encoder
from .audio_readers import ReadFn, get_audio_reader
from .config import DEFAULT_AUDIO_ENCODER, DEFAULT_AUDIO_READER
from .errors import DecodeError, short_reason


@dataclass(frozen=True)
class DecodeSpec:
    """What decoding needs from the config (small and picklable for worker processes)."""

    T: int = 60
    fps: float = 1.0
    sampling: str = "truncate"
    image_size: int = 224
    audio_encoder: str = DEFAULT_AUDIO_ENCODER
    #: the registered encoder's front end, looked up here; it travels to the workers pickled,
    #: so an encoder registered at run time works there too
    front_end: AudioFrontEnd | None = None
    audio_reader: str = DEFAULT_AUDIO_READER
    #: the registered reader's function, looked up here and carried like ``front_end``
    reader: ReadFn | None = None

    def __post_init__(self) -> None:
        if self.front_end is None:
            object.__setattr__(self, "front_end", get_audio_encoder(self.audio_encoder).front_end)
        if self.reader is None:
            object.__setattr__(self, "reader", get_audio_reader(self.audio_reader).read)

    @classmethod
    def from_config(cls, cfg: Any, image_size: int | None = None) -> "DecodeSpec":
        size = int(image_size or getattr(cfg, "image_size", 0) or 0)
        if size <= 0:
            raise ValueError("image_size must be resolved (> 0) before decoding")
        return cls(int(cfg.T), float(cfg.fps), str(cfg.sampling), size,
                   str(getattr(cfg, "audio_encoder", DEFAULT_AUDIO_ENCODER)),
                   audio_reader=str(getattr(cfg, "audio_reader", DEFAULT_AUDIO_READER)))


@dataclass
class DecodedVideo:
    """Encoder inputs of one video (padded to T segments)."""

    path: str
    frames: np.ndarray          # uint8 [T, S, S, 3] RGB, S = image_size
    audio: np.ndarray           # float32 [T, *front_end.shape] (zeros without audio)
    audio_present: bool
    n_segments: int             # real (unpadded) segments, 1..T
    duration: float             # seconds

    @property
    def video_id(self) -> str:
        return Path(self.path).stem


def segment_centres(duration: float, spec: DecodeSpec) -> tuple[np.ndarray, int]:
    """Centre times (seconds) of the real segments, and their number (1..T)."""
    seg = 1.0 / spec.fps
    if not math.isfinite(duration) or duration <= 0:
        return np.array([0.0]), 1
    whole = max(1, math.ceil(duration * spec.fps - 0.5 - 1e-6))  # centres inside the video
    if whole > spec.T and spec.sampling == "uniform":
        return (np.arange(spec.T) + 0.5) * (duration / spec.T), spec.T
    n = min(whole, spec.T)
    return (np.arange(n) + 0.5) * seg, n


def _probe(path: str) -> tuple[int, int, bool]:
    """(width, height, has_audio) from the container header, with PyAV."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: no video stream")
            v = container.streams.video[0].codec_context
            return int(v.width), int(v.height), bool(container.streams.audio)
    except DecodeError:
        raise
    except Exception as exc:  # av.error.* (invalid data, not found, ...)
        raise DecodeError(f"{path}: cannot open container: {exc}") from None


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the short side = ``size``, aspect kept."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    if width <= height:
        return size, max(size, round(height * size / width))
    return max(size, round(width * size / height)), size


def centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, 3] -> [N, size, size, 3], the centre square."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top:top + size, left:left + size])


def _frame_timing(vr, path: str) -> tuple[np.ndarray, float]:
    """Start time of every frame and the duration, from decord's index (avg fps as fallback)."""
    n = len(vr)
    starts = None
    duration = float("nan")
    try:
        ts = np.asarray(vr.get_frame_timestamp(np.arange(n)), dtype=np.float64).reshape(n, 2)
        if np.all(np.isfinite(ts)) and ts[-1, 1] > 0:
            starts, duration = ts[:, 0], float(ts[-1, 1])
    except Exception:
        pass
    if starts is None:
        fps = float(vr.get_avg_fps() or 0.0)
        if math.isfinite(fps) and fps > 0:
            starts, duration = np.arange(n) / fps, n / fps
        else:  # no usable timing at all: treat as a still image
            starts, duration = np.zeros(n), 0.0
    return starts, duration


def frame_indices(starts: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the frame shown at each centre time (the last frame starting at or before it)."""
    idx = np.searchsorted(starts, centres, side="right") - 1
    return np.clip(idx, 0, len(starts) - 1)


def read_audio(path: str, sample_rate: int,
               reader: str | ReadFn = DEFAULT_AUDIO_READER) -> np.ndarray | None:
    """Mono float32 waveform at ``sample_rate`` read by ``reader`` (a registered name or an entry's
    function, :mod:`extract.audio_readers`), or None without an audio stream."""
    read = get_audio_reader(reader).read if isinstance(reader, str) else reader
    wav = read(path, int(sample_rate))
    if wav is None:
        return None
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if wav.size == 0:
        return None
    if not np.all(np.isfinite(wav)):
        raise DecodeError(f"{path}: audio has NaN/inf samples")
    return wav


def audio_inputs(front_end: AudioFrontEnd, wav: np.ndarray | None, centres: np.ndarray,
                 path: str) -> np.ndarray:
    """The front end's input per centre (zeros without audio), its shape checked."""
    if wav is None:
        return np.zeros((len(centres), *front_end.shape), dtype=np.float32)
    out = np.asarray(front_end(wav, centres), dtype=np.float32)
    if out.shape != (len(centres), *front_end.shape):
        raise DecodeError(f"{path}: audio front end {type(front_end).__name__} returned "
                          f"{out.shape}, expected {(len(centres), *front_end.shape)}")
    return out


def pad_to(arr: np.ndarray, T: int) -> np.ndarray:
    """Repeat the last row of ``arr`` until it has ``T`` rows."""
    n = arr.shape[0]
    if n >= T:
        return arr[:T]
    return np.concatenate([arr, np.repeat(arr[-1:], T - n, axis=0)], axis=0)


def decode_video(path: str | Path, spec: Any) -> DecodedVideo:
    """Decode ``path`` into T frames + T audio inputs (see the module doc for the rules).

    ``spec`` is a :class:`DecodeSpec` or any object with ``T``, ``fps``, ``sampling`` and a
    resolved ``image_size``.  Raises :class:`DecodeError` for anything unusable.
    """
    from decord import VideoReader, cpu
    from decord._ffi.base import DECORDError

    if not isinstance(spec, DecodeSpec):
        spec = DecodeSpec.from_config(spec)
    path = str(path)
    if not Path(path).is_file():
        raise DecodeError(f"{path}: file not found")
    width, height, has_audio = _probe(path)
    rw, rh = resized_size(width, height, spec.image_size)
    try:
        # Resized on decode, not after: decord converts *every* decoded frame (25 a second, not
        # just the 60 kept) through its scaler, and a 398x224 output costs less than a 640x360
        # one (measured on a 60-s 640x360 video, num_threads=1: get_batch of the 60 frames 0.36 s
        # resized vs 0.82 s at the native size, 2-core CPU machine).  It also keeps decord's
        # 48/72-px-wide 4-channel bug away from small videos (README, Troubleshooting).
        vr = VideoReader(path, ctx=cpu(0), width=rw, height=rh, num_threads=1)
        if len(vr) == 0:
            raise DecodeError(f"{path}: no decodable frames")
        starts, duration = _frame_timing(vr, path)
        centres, n_real = segment_centres(duration, spec)
        idx = frame_indices(starts, centres)
        uniq, inverse = np.unique(idx, return_inverse=True)
        batch = vr.get_batch(uniq.tolist()).asnumpy()
    except DecodeError:
        raise
    except (DECORDError, RuntimeError, ValueError, IndexError) as exc:
        raise DecodeError(f"{path}: cannot decode video: {short_reason(exc)}") from None
    if batch.ndim != 4 or batch.shape[0] != len(uniq) or batch.shape[3] != 3:
        raise DecodeError(f"{path}: decoder returned frames of shape {batch.shape}")
    if batch.shape[1] < spec.image_size or batch.shape[2] < spec.image_size:
        raise DecodeError(f"{path}: decoder returned {batch.shape[2]}x{batch.shape[1]} frames, "
                          f"smaller than the {spec.image_size}px crop")
    frames = centre_crop(batch, spec.image_size)[inverse]
    wav = read_audio(path, spec.front_end.sample_rate, spec.reader) if has_audio else None
    audio = audio_inputs(spec.front_end, wav, centres, path)
    return DecodedVideo(path=path, frames=pad_to(frames, spec.T), audio=pad_to(audio, spec.T),
                        audio_present=wav is not None, n_segments=int(n_real),
                        duration=float(duration))
