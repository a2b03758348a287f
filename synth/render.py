"""Render a synthetic scene (:mod:`synth.scene`) to frames, a waveform and an mp4 file.

Pictures: a plain gray background and, per visible instrument, a big solid shape in its colour
centred in its third (left / middle / right) of the *stage* — the centred square of side
min(width, height), so that a centre crop (the usual CLIP preprocessing) keeps every instrument
and a scene looks the same after cropping whatever its aspect ratio — drifting sideways when it
moves, with a bar of the same colour under it while it sounds.  Sound: per sounding instrument a loud tone at
its pitch (fundamental + a weak octave) or a band of noise around its pitch (drums), sustained or
staccato (4 pulses per second), at its level, during its intervals.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from .avwrite import write_av
from .scene import LEVELS, SLOTS, sounding_at

_FADE_S = 0.01  # fade in/out at interval edges (no clicks)
_PULSE_HZ = 4.0  # staccato pulses per second
_PULSE_ON_S = 0.12


@lru_cache(maxsize=256)
def shape_mask(shape: str, width: int, height: int) -> np.ndarray:
    """Boolean ``[height, width]`` mask of a named shape filling its box."""
    cx = (np.arange(width) + 0.5) / width * 2 - 1  # -1..1 over the box
    cy = (np.arange(height) + 0.5) / height * 2 - 1
    y, x = np.meshgrid(cy, cx, indexing="ij")  # y grows downwards
    r = np.sqrt(x * x + y * y)
    if shape == "circle":
        m = r <= 0.95
    elif shape == "square":
        m = (np.abs(x) <= 0.85) & (np.abs(y) <= 0.85)
    elif shape == "triangle":
        m = (y >= -0.9) & (y <= 0.9) & (np.abs(x) <= (y + 0.9) / 1.8 * 0.95)
    elif shape == "diamond":
        m = np.abs(x) + np.abs(y) <= 0.97
    elif shape == "ring":
        m = (r <= 0.95) & (r >= 0.5)
    elif shape == "cross":
        m = ((np.abs(x) <= 0.32) & (np.abs(y) <= 0.95)) | ((np.abs(y) <= 0.32) & (np.abs(x) <= 0.95))
    elif shape == "hourglass":
        m = (np.abs(x) <= np.abs(y) + 0.05) & (np.abs(y) <= 0.92)
    elif shape == "dome":
        m = (r <= 0.95) & (y <= 0.35)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m


def _layout(scene: dict) -> dict:
    """Pixel geometry: stage (centred square) left/top/side, shape box w/h and top, bar."""
    w, h = scene["width"], scene["height"]
    s = min(w, h)
    left, top = (w - s) / 2, (h - s) / 2
    box_w, box_h = max(2, int(0.3 * s)), max(2, int(0.45 * s))
    return {"left": left, "side": s, "box_w": box_w, "box_h": box_h,
            "box_top": int(round(top + 0.14 * s)),
            "bar_top": int(round(top + 0.14 * s + box_h + 0.05 * s)),
            "bar_h": max(2, int(round(0.09 * s)))}


def _paste(frame: np.ndarray, mask: np.ndarray, x0: int, y0: int, color: np.ndarray) -> None:
    h, w = frame.shape[:2]
    mh, mw = mask.shape
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(w, x0 + mw), min(h, y0 + mh)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    sub = mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    frame[fy0:fy1, fx0:fx1][sub] = color


def render_frame(scene: dict, t: float) -> np.ndarray:
    """The ``[H, W, 3]`` uint8 picture of ``scene`` at time ``t`` seconds."""
    w, h = scene["width"], scene["height"]
    frame = np.empty((h, w, 3), dtype=np.uint8)
    frame[:] = np.asarray(scene["background"], dtype=np.uint8)
    g = _layout(scene)
    third = g["side"] / 3
    for inst in scene["instruments"]:
        if not inst["visible"]:
            continue
        color = np.asarray(inst["color"], dtype=np.uint8)
        mo = inst["motion"]
        cx = g["left"] + (SLOTS.index(inst["slot"]) + 0.5) * third
        cx += mo["amp"] * third * math.sin(2 * math.pi * t / mo["period"] + mo["phase"])
        x0 = int(round(cx - g["box_w"] / 2))
        _paste(frame, shape_mask(inst["shape"], g["box_w"], g["box_h"]), x0, g["box_top"], color)
        if sounding_at(inst, t):
            y0 = g["bar_top"]
            frame[y0:y0 + g["bar_h"], max(0, x0):max(0, x0 + g["box_w"])] = color
    return frame


def iter_frames(scene: dict) -> Iterator[np.ndarray]:
    """All frames of the scene at its frame rate (``floor(duration * fps)`` frames, at least 1)."""
    n = max(1, int(math.floor(scene["duration"] * scene["fps"] + 1e-9)))
    for i in range(n):
        yield render_frame(scene, i / scene["fps"])


def _envelope(inst: dict, t: np.ndarray) -> np.ndarray:
    env = np.zeros_like(t)
    for s, e in inst["intervals"]:
        ramp_in = np.clip((t - s) / _FADE_S, 0, 1)
        ramp_out = np.clip((e - t) / _FADE_S, 0, 1)
        env = np.maximum(env, np.minimum(ramp_in, ramp_out))
    if inst["style"] == "staccato":
        phase = np.mod(t, 1.0 / _PULSE_HZ)
        pulse = np.where(phase < _PULSE_ON_S, np.exp(-phase / (_PULSE_ON_S / 2.5)), 0.0)
        env = env * pulse
    return env


def _voice(inst: dict, t: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    f = inst["pitch_hz"]
    if inst["timbre"] == "noise":
        spec = np.fft.rfft(rng.standard_normal(len(t)))
        freqs = np.fft.rfftfreq(len(t), 1.0 / sample_rate)
        spec[(freqs < f / 1.3) | (freqs > f * 1.3)] = 0
        wave = np.fft.irfft(spec, n=len(t))
        wave /= max(1e-9, float(np.sqrt(np.mean(wave ** 2)))) * math.sqrt(2)  # sine-like RMS
    else:
        wave = (np.sin(2 * math.pi * f * t) + 0.2 * np.sin(4 * math.pi * f * t)) / 1.2
    return wave


def render_audio(scene: dict, sample_rate: int = 16000) -> np.ndarray | None:
    """The mono float32 waveform of ``scene`` (``None`` for a scene without an audio track).
    The mix is scaled down as a whole if it would clip, which keeps relative loudness."""
    if not scene["has_audio"]:
        return None
    n = int(round(scene["duration"] * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(scene["noise_seed"])
    mix = np.zeros(n)
    for inst in scene["instruments"]:
        if not inst["intervals"]:
            continue
        mix += LEVELS[inst["level"]] * _envelope(inst, t) * _voice(inst, t, rng, sample_rate)
    peak = float(np.abs(mix).max()) if n else 0.0
    if peak > 0.95:
        mix *= 0.95 / peak
    return mix.astype(np.float32)


def write_scene(scene: dict, out_dir: str | Path, sample_rate: int = 16000,
                crf: int = 23) -> tuple[str, int]:
    """Render ``scene`` to ``out_dir / scene['file']``; returns (video_id, file size in bytes)."""
    path = Path(out_dir) / scene["file"]
    write_av(path, iter_frames(scene), fps=scene["fps"], audio=render_audio(scene, sample_rate),
             sample_rate=sample_rate, crf=crf, threads=1)
    return scene["video_id"], path.stat().st_size
