"""Write an H.264 (yuv420p) + AAC mp4 file from numpy frames and a mono waveform, with PyAV.

Used by the synthetic demo dataset (:mod:`extract.synth`) and by tests that need real video files.
Odd frame sizes are padded to even (yuv420p needs even width and height) by repeating the last
row/column.  Audio, when given, is interleaved with the video so that the muxer never has to
buffer a whole stream.
"""
from __future__ import annotations

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


# BT.601 limited-range ("tv") RGB -> YCbCr, the matrix swscale uses for rgb24 -> yuv420p
_RGB2YUV = np.array([[65.481, 128.553, 24.966],
                     [-37.797, -74.203, 112.0],
                     [112.0, -93.786, -18.214]], dtype=np.float32) / 255.0


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB (H, W even) -> ``[H * 3 // 2, W]`` uint8 planar Y, U, V (BT.601
    limited range, chroma = mean of each 2x2 block), the layout ``av.VideoFrame.from_ndarray``
    takes for 'yuv420p'.  Done here rather than by swscale because swscale's output depended on
    uninitialised row padding (the same frames gave different bytes run to run)."""
    h, w = frame.shape[:2]
    yuv = frame.astype(np.float32) @ _RGB2YUV.T
    y = yuv[..., 0] + 16.0
    uv = yuv[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3)) + 128.0
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    flat = out.reshape(-1)
    q = h * w // 4
    flat[:h * w] = np.clip(np.rint(y), 0, 255).reshape(-1)
    flat[h * w:h * w + q] = np.clip(np.rint(uv[..., 0]), 0, 255).reshape(-1)
    flat[h * w + q:] = np.clip(np.rint(uv[..., 1]), 0, 255).reshape(-1)
    return out


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
             preset: str = "veryfast",
             threads: int = 0) -> Path:
    """Write ``frames`` (``[N, H, W, 3]`` uint8 RGB, or an iterable of ``[H, W, 3]`` frames) and
    optional mono ``audio`` (float in [-1, 1] at ``sample_rate``) to the mp4 file ``path``.

    ``frame_times`` (seconds, strictly increasing, one per frame) gives variable-frame-rate
    timestamps; otherwise frame ``i`` is shown at ``i / fps``.  ``fps`` is always recorded as
    the stream's nominal rate.  The file is written to a temporary name and renamed into place,
    so a crash never leaves a truncated ``path``.  ``preset`` is the x264 speed preset;
    ``threads=1`` makes the encoded bytes reproducible (0 = the encoder's choice).  AAC uses
    FFmpeg's 'fast' coder.
    Returns ``path``.
    """
    path = Path(path)
    rate = _fps_fraction(fps)
    if audio is not None:
        audio = _check_audio(audio)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    times = None
    if frame_times is not None:
        times = np.asarray(frame_times, dtype=np.float64)
        if times.ndim != 1 or (len(times) > 1 and np.any(np.diff(times) <= 0)) or \
                (len(times) and times[0] < 0):
            raise ValueError("frame_times must be a 1-D, non-negative, strictly increasing sequence")
    it: Iterator[np.ndarray] = iter(frames)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n_written = 0
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            vstream = None
            astream = None
            a_pos = 0  # next audio sample to encode
            for i, frame in enumerate(it):
                frame = _even_pad(np.asarray(frame), f"{path}: frame {i}")
                if vstream is None:
                    vstream = container.add_stream(video_codec, rate=rate)
                    vstream.width, vstream.height = frame.shape[1], frame.shape[0]
                    vstream.pix_fmt = "yuv420p"
                    if video_codec == "libx264":
                        vstream.options = {"crf": str(int(crf)), "preset": preset}
                    if threads:
                        vstream.codec_context.thread_count = int(threads)
                    if times is not None:
                        vstream.codec_context.time_base = _VFR_TIME_BASE
                    if audio is not None:
                        astream = container.add_stream(audio_codec, rate=int(sample_rate))
                        astream.layout = "mono"
                        if audio_codec == "aac":  # ~2.5x cheaper than the default 'twoloop'
                            astream.options = {"aac_coder": "fast"}
                    first_shape = frame.shape
                elif frame.shape != first_shape:
                    raise ValueError(f"{path}: frame {i} has shape {frame.shape}, frame 0 had "
                                     f"{first_shape}")
                if times is not None:
                    if i >= len(times):
                        raise ValueError(f"{path}: more frames than frame_times ({len(times)})")
                    t = float(times[i])
                else:
                    t = float(i / rate)
                vf = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
                if times is not None:
                    vf.pts = int(round(t / _VFR_TIME_BASE))
                    vf.time_base = _VFR_TIME_BASE
                else:
                    vf.pts = i
                container.mux(vstream.encode(vf))
                n_written += 1
                if astream is not None:  # keep audio up to the current video time
                    a_pos = _encode_audio(container, astream, audio, a_pos,
                                          int(round(t * sample_rate)))
            if vstream is None:
                raise ValueError(f"{path}: no frames given")
            if times is not None and n_written != len(times):
                raise ValueError(f"{path}: {n_written} frames but {len(times)} frame_times")
            container.mux(vstream.encode(None))
            if astream is not None:
                _encode_audio(container, astream, audio, a_pos, len(audio))
                container.mux(astream.encode(None))
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


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
