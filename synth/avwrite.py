"""Write an H.264 (yuv420p) + AAC mp4 file from numpy frames and a mono waveform, with PyAV.

Used by the synthetic demo dataset (:mod:`synth.generate`) and by tests that need real video files.
Odd frame sizes are padded to even (yuv420p needs even width and height) by repeating the last
row/column.  Audio, when given, is interleaved with the video so that the muxer never has to
buffer a whole stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import av
import numpy as np

# Time base for explicit (variable-rate) frame timestamps: 1/90000 s, the MPEG convention.
_VFR_TIME_BASE = Fraction(1, 90000)
_AUDIO_CHUNK = 1024  # samples handed to the encoder at a time (one AAC frame)


def _even_pad(frame: np.ndarray, where: str) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"{where}: expected a [H, W, 3] uint8 frame, got shape {frame.shape} "
                         f"dtype {frame.dtype}")
    h, w = frame.shape[:2]
    if h < 2 or w < 2:
        raise ValueError(f"{where}: frame {w}x{h} is too small (need at least 2x2)")
    ph, pw = h % 2, w % 2
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB (H, W even) -> ``[H * 3 // 2, W]`` uint8 planar Y, U, V, the
    layout ``av.VideoFrame.from_ndarray`` takes for 'yuv420p'.  BT.601 limited range in the
    usual 8-bit integer form (the matrix swscale uses), chroma from the mean of each 2x2 block.
    Done here rather than by swscale so that every input byte the encoder sees is set (see
    :func:`yuv420p_frame`): encoded bytes are then reproducible."""
    h, w = frame.shape[:2]
    f = frame.astype(np.int32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    flat = out.reshape(-1)
    flat[:h * w] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16).reshape(-1)
    s = f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]  # 4 x block mean
    rs, gs, bs = s[..., 0], s[..., 1], s[..., 2]
    q = h * w // 4
    flat[h * w:h * w + q] = (((-38 * rs - 74 * gs + 112 * bs + 512) >> 10) + 128).reshape(-1)
    flat[h * w + q:] = (((112 * rs - 94 * gs - 18 * bs + 512) >> 10) + 128).reshape(-1)
    return out


def yuv420p_frame(yuv: np.ndarray) -> av.VideoFrame:
    """A 'yuv420p' ``av.VideoFrame`` from :func:`rgb_to_yuv420p` output, with every byte of its
    planes set, row padding included (edge-replicated).  ``VideoFrame.from_ndarray`` leaves the
    padding uninitialised, and x264 reads it: the same frames then encode to different bytes
    depending on what the heap held before."""
    w, h = yuv.shape[1], yuv.shape[0] * 2 // 3
    vf = av.VideoFrame(w, h, "yuv420p")
    flat = yuv.reshape(-1)
    start = 0
    for plane in vf.planes:
        pw, ph = plane.width, plane.height
        data = flat[start:start + pw * ph].reshape(ph, pw)
        start += pw * ph
        rows = plane.buffer_size // plane.line_size
        if plane.line_size != pw or rows != ph:
            data = np.pad(data, ((0, rows - ph), (0, plane.line_size - pw)), mode="edge")
        plane.update(np.ascontiguousarray(data))
    return vf


def _fps_fraction(fps: float) -> Fraction:
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be a mono 1-D array, got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be float in [-1, 1], got dtype {audio.dtype}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    return np.clip(audio.astype(np.float32), -1.0, 1.0)


def write_av(path: str | Path,
             frames: np.ndarray | Iterable[np.ndarray],
             fps: float,
             audio: np.ndarray | None = None,
             sample_rate: int = 16000,
             video_codec: str = "libx264",
             audio_codec: str = "aac",
             crf: int = 23,
             frame_times: Sequence[float] | None = None,
             preset: str = "superfast",
             threads: int = 0) -> Path:
    """Write ``frames`` (``[N, H, W, 3]`` uint8 RGB, or an iterable of ``[H, W, 3]`` frames) and
    optional mono ``audio`` (float in [-1, 1] at ``sample_rate``) to the mp4 file ``path``.

    ``frame_times`` (seconds, strictly increasing, one per frame) gives variable-frame-rate
    timestamps; otherwise frame ``i`` is shown at ``i / fps``.  ``fps`` is always recorded as
    the stream's nominal rate.  The file is written to a temporary name and renamed into place,
    so a crash never leaves a truncated ``path``.  ``preset`` is the x264 speed preset.
    ``threads=1`` makes the encoded bytes reproducible (0 = the encoder's choice) — with presets
    up to 'superfast' only: the mb-tree lookahead of 'veryfast' and slower reads uninitialised
    memory and gives run-to-run different bytes (pictures equal to within one level).  AAC uses
    FFmpeg's 'fast' coder.
    Returns ``path``.
    """
    path = Path(path)
    rate = _fps_fraction(fps)
    if audio is not None:
        audio = _check_audio(audio)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    times = _check_times(frame_times)
    codecs = _Codecs(video_codec, audio_codec, int(crf), preset, int(threads), int(sample_rate))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            vstream, astream, a_pos = _write_frames(container, path, iter(frames), rate, times,
                                                    audio, codecs)
            container.mux(vstream.encode(None))
            if astream is not None:
                _encode_audio(container, astream, audio, a_pos, len(audio))
                container.mux(astream.encode(None))
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@dataclass(frozen=True)
class _Codecs:
    video: str
    audio: str
    crf: int
    preset: str
    threads: int
    sample_rate: int


def _check_times(frame_times: Sequence[float] | None) -> np.ndarray | None:
    if frame_times is None:
        return None
    times = np.asarray(frame_times, dtype=np.float64)
    if times.ndim != 1 or (len(times) > 1 and np.any(np.diff(times) <= 0)) or \
            (len(times) and times[0] < 0):
        raise ValueError("frame_times must be a 1-D, non-negative, strictly increasing sequence")
    return times


def _add_streams(container, frame: np.ndarray, rate: Fraction, vfr: bool, with_audio: bool,
                 codecs: _Codecs):
    """The video stream (sized by the first frame) and the audio stream (or None)."""
    vstream = container.add_stream(codecs.video, rate=rate)
    vstream.width, vstream.height = frame.shape[1], frame.shape[0]
    vstream.pix_fmt = "yuv420p"
    if codecs.video == "libx264":
        vstream.options = {"crf": str(codecs.crf), "preset": codecs.preset}
    if codecs.threads:
        vstream.codec_context.thread_count = codecs.threads
    if vfr:
        vstream.codec_context.time_base = _VFR_TIME_BASE
    astream = None
    if with_audio:
        astream = container.add_stream(codecs.audio, rate=codecs.sample_rate)
        astream.layout = "mono"
        if codecs.audio == "aac":  # ~2.5x cheaper than the default 'twoloop'
            astream.options = {"aac_coder": "fast"}
    return vstream, astream


def _write_frames(container, path: Path, it: Iterator[np.ndarray], rate: Fraction,
                  times: np.ndarray | None, audio: np.ndarray | None, codecs: _Codecs):
    """Encode every frame (and the audio up to each frame's time); returns the streams and the
    next audio sample to encode."""
    vstream = astream = None
    a_pos = 0
    prev_rgb = prev_yuv = first_shape = None
    n_written = 0
    for i, frame in enumerate(it):
        frame = _even_pad(np.asarray(frame), f"{path}: frame {i}")
        if vstream is None:
            vstream, astream = _add_streams(container, frame, rate, times is not None,
                                            audio is not None, codecs)
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise ValueError(f"{path}: frame {i} has shape {frame.shape}, frame 0 had {first_shape}")
        if times is not None and i >= len(times):
            raise ValueError(f"{path}: more frames than frame_times ({len(times)})")
        t = float(times[i]) if times is not None else float(i / rate)
        if prev_rgb is None or not np.array_equal(frame, prev_rgb):
            prev_rgb, prev_yuv = frame.copy(), rgb_to_yuv420p(frame)  # still scenes: once
        vf = yuv420p_frame(prev_yuv)
        if times is not None:
            vf.pts = int(round(t / _VFR_TIME_BASE))
            vf.time_base = _VFR_TIME_BASE
        else:
            vf.pts = i
        container.mux(vstream.encode(vf))
        n_written += 1
        if astream is not None:  # keep audio up to the current video time
            a_pos = _encode_audio(container, astream, audio, a_pos, int(round(t * codecs.sample_rate)))
    if vstream is None:
        raise ValueError(f"{path}: no frames given")
    if times is not None and n_written != len(times):
        raise ValueError(f"{path}: {n_written} frames but {len(times)} frame_times")
    return vstream, astream, a_pos


def _encode_audio(container, astream, audio: np.ndarray, start: int, stop: int) -> int:
    stop = min(stop, len(audio))
    pos = start
    while pos < stop:
        end = min(pos + _AUDIO_CHUNK, stop)
        chunk = audio[pos:end].reshape(1, -1)
        af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        af.sample_rate = astream.codec_context.sample_rate
        af.pts = pos
        af.time_base = Fraction(1, af.sample_rate)
        container.mux(astream.encode(af))
        pos = end
    return pos
