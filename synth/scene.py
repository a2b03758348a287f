"""Scenes of the synthetic demo dataset: which instruments a video holds, where they are, what
they look and sound like and when they play.

A scene is plain JSON-able data (written to ``scenes.json``); the renderer
(:mod:`synth.render`) and the question generator (:mod:`synth.questions`) read nothing
else.  Identities are deliberately crude and far apart — a big solid shape in a saturated,
instrument-specific colour and a loud tone at an instrument-specific pitch — so that even
randomly initialised CLIP / VGGish encoders separate them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SLOTS = ("left", "middle", "right")
LEVELS = {"quiet": 0.1, "medium": 0.25, "loud": 0.6}  # amplitude; ~8 dB apart
STYLES = ("sustained", "staccato")


@dataclass(frozen=True)
class Identity:
    """What an instrument looks like (shape, RGB colour) and its sound kind ('tone'|'noise')."""

    name: str
    color: tuple[int, int, int]
    shape: str
    timbre: str


#: Every instrument of the MUSIC-AVQA answer vocabulary.  The first eight (the default set) have
#: the most distinct colours and shapes; pitches are assigned when a set is chosen
#: (:func:`palette`), spread evenly on a log scale so that any set is well separated.
IDENTITIES: tuple[Identity, ...] = (
    Identity("violin", (230, 25, 25), "circle", "tone"),
    Identity("cello", (30, 70, 235), "square", "tone"),
    Identity("piano", (245, 225, 20), "triangle", "tone"),
    Identity("flute", (25, 200, 40), "diamond", "tone"),
    Identity("drum", (225, 30, 225), "ring", "noise"),
    Identity("trumpet", (250, 135, 15), "cross", "tone"),
    Identity("accordion", (20, 215, 225), "hourglass", "tone"),
    Identity("guzheng", (245, 245, 245), "dome", "tone"),
    Identity("congas", (130, 40, 200), "square", "noise"),
    Identity("pipa", (150, 90, 40), "circle", "tone"),
    Identity("ukulele", (255, 150, 200), "diamond", "tone"),
    Identity("clarinet", (170, 255, 60), "triangle", "tone"),
    Identity("saxophone", (20, 30, 130), "cross", "tone"),
    Identity("bagpipe", (0, 130, 130), "ring", "tone"),
    Identity("bassoon", (130, 130, 0), "hourglass", "tone"),
    Identity("acoustic_guitar", (130, 0, 30), "dome", "tone"),
    Identity("banjo", (250, 128, 114), "square", "tone"),
    Identity("electric_bass", (120, 190, 255), "circle", "tone"),
    Identity("erhu", (200, 160, 0), "triangle", "tone"),
    Identity("xylophone", (150, 150, 150), "diamond", "tone"),
    Identity("tuba", (90, 255, 160), "ring", "tone"),
    Identity("suona", (255, 80, 120), "cross", "tone"),
)
DEFAULT_INSTRUMENTS = tuple(i.name for i in IDENTITIES[:8])
_BY_NAME = {i.name: i for i in IDENTITIES}
PITCH_RANGE_HZ = (200.0, 3200.0)


def palette(names: tuple[str, ...] | list[str] = DEFAULT_INSTRUMENTS) -> list[dict]:
    """The instrument identities of one dataset: name, colour, shape, timbre and a pitch (Hz)
    log-spaced over :data:`PITCH_RANGE_HZ` in the order given (at least 2 distinct names)."""
    names = list(names)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"instruments: unknown name(s) {unknown}; known: {sorted(_BY_NAME)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"instruments: need at least 2 distinct names, got {names}")
    lo, hi = PITCH_RANGE_HZ
    out = []
    for k, name in enumerate(names):
        ident = _BY_NAME[name]
        pitch = lo * (hi / lo) ** (k / (len(names) - 1))
        out.append({"name": name, "color": list(ident.color), "shape": ident.shape,
                    "timbre": ident.timbre, "pitch_hz": round(pitch, 2)})
    return out


@dataclass(frozen=True)
class SceneSpec:
    """How scenes vary (a subset of :class:`synth.generate.SynthConfig`)."""

    min_seconds: float = 4.0
    max_seconds: float = 20.0
    long_min_seconds: float = 61.0
    long_max_seconds: float = 75.0
    sizes: tuple[tuple[int, int], ...] = ((176, 144), (256, 144), (320, 180), (144, 256))
    fps: tuple[float, ...] = (8.0, 10.0, 12.0, 15.0)
    #: probability that a visible instrument has a duplicate of the same kind on screen
    duplicate_prob: float = 0.2


def _intervals(rng: np.random.Generator, duration: float, mode: str) -> list[list[float]]:
    """Sounding intervals (seconds, whole-second starts) for one instrument."""
    d = duration
    whole = max(1, int(math.floor(d)))
    if mode == "silent":
        return []
    if mode == "always":
        return [[0.0, round(d, 3)]]
    start = int(rng.integers(0, max(1, whole - 1)))
    length = int(rng.integers(1, max(2, whole - start + 1)))
    end = min(d, start + length)
    spans = [[float(start), round(float(end), 3)]]
    gap_start = int(math.ceil(end)) + 1
    if mode == "two" and gap_start < whole:
        s2 = int(rng.integers(gap_start, whole))
        e2 = min(d, s2 + int(rng.integers(1, max(2, whole - s2 + 1))))
        spans.append([float(s2), round(float(e2), 3)])
    return spans


def make_scene(rng: np.random.Generator, video_id: str, spec: SceneSpec, pal: list[dict],
               long: bool, has_audio: bool) -> dict:
    """One random scene.  ``long`` picks a duration over ``long_*_seconds``; ``has_audio=False``
    gives a video without an audio track (then nothing sounds and nothing is off screen)."""
    lo, hi = (spec.long_min_seconds, spec.long_max_seconds) if long else \
        (spec.min_seconds, spec.max_seconds)
    duration = round(float(rng.uniform(lo, hi)), 1)
    w, h = spec.sizes[int(rng.integers(len(spec.sizes)))]
    fps = float(spec.fps[int(rng.integers(len(spec.fps)))])
    n = int(rng.integers(1, 5))  # 1..4 instruments
    if has_audio:
        # off screen: at least n-3 (3 slots); 0 or 1 more
        n_off = max(n - 3, int(rng.random() < 0.35))
    else:
        n_off = 0
        n = min(n, 3)
    n_vis = n - n_off
    names: list[str] = []
    order = [pal[int(i)]["name"] for i in rng.permutation(len(pal))]
    for k in range(n):
        dup = 0 < k < n_vis and rng.random() < spec.duplicate_prob
        if dup or not order:  # a second one of a kind already on screen (or the set ran out)
            names.append(names[int(rng.integers(k))])
        else:
            names.append(order.pop(0))
    slots = [SLOTS[int(s)] for s in rng.permutation(3)[:n_vis]]
    by_name = {p["name"]: p for p in pal}
    instruments = []
    for k, name in enumerate(names):
        visible = k < n_vis
        if not has_audio:
            mode = "silent"
        elif visible:
            mode = str(rng.choice(["silent", "always", "one", "two"], p=[0.2, 0.3, 0.3, 0.2]))
        else:
            mode = str(rng.choice(["always", "one", "two"], p=[0.3, 0.4, 0.3]))
        moving = rng.random() < 0.5
        p = by_name[name]
        instruments.append({
            "name": name,
            "visible": visible,
            "slot": slots[k] if visible else None,
            "color": p["color"],
            "shape": p["shape"],
            "timbre": p["timbre"],
            "pitch_hz": p["pitch_hz"],
            "level": str(rng.choice(list(LEVELS))),
            "style": str(rng.choice(STYLES)),
            "intervals": _intervals(rng, duration, mode),
            "motion": {"amp": round(float(rng.uniform(0.04, 0.12)), 3) if moving else 0.0,
                       "period": round(float(rng.uniform(2.0, 6.0)), 2),
                       "phase": round(float(rng.uniform(0, 2 * math.pi)), 3)},
        })
    gray = int(rng.integers(25, 61))
    return {
        "video_id": video_id,
        "file": f"videos/{video_id}.mp4",
        "duration": duration,
        "fps": fps,
        "width": int(w),
        "height": int(h),
        "has_audio": bool(has_audio),
        "background": [gray, gray, gray],
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
        "palette": [q["name"] for q in pal],  # the names questions may ask about
        "instruments": instruments,
    }


def sounding_at(inst: dict, t: float) -> bool:
    """Whether instrument ``inst`` sounds at time ``t`` (seconds)."""
    return any(s <= t < e for s, e in inst["intervals"])
