"""The synthetic demo dataset: real mp4 files (H.264 + AAC) of simple "instrument" scenes and
MUSIC-AVQA-format question files whose answers are known.

    out/videos/synth_00000.mp4 ...         one file per scene (some without an audio track)
    out/scenes.json                        the scene description each video was rendered from
    out/annotations/avqa-{train,val,test}.json   MUSIC-AVQA records, split by video (70/15/15)

Everything is a function of the config (seed included): the scenes, the questions, the split
and the annotation files are byte-identical for a seed; videos are encoded
single-threaded per file (in parallel over files) with x264's 'superfast' preset, which makes
the video files byte-identical too (see :func:`synth.avwrite.write_av`).
:func:`plan` builds scenes and questions without writing any video (fast; used for balance
checks), :func:`synthesize` writes everything.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from common.cores import usable_cores
from common.files import atomic_write

from .avqa import AVQA_TYPES, avqa_candidates, avqa_record
from .questions import TYPES, scene_answers, select_questions, type_name
from .render import write_scene
from .scene import DEFAULT_INSTRUMENTS, SceneSpec, make_scene, palette

SPLITS = ("train", "val", "test")
#: frame widths that decord 0.6.0 misreads (linesize taken for 4 channels; dmlc/decord#336),
#: found by writing and decoding every even width from 32 to 480
DECORD_BAD_WIDTHS = (48, 72)
SCENES_FORMAT = 1



class SynthError(Exception):
    """An output folder or scenes file the generator cannot use; the message says why."""

@dataclass
class SynthConfig:
    """Everything ``python cli.py synth`` needs (fields are its options)."""

    #: number of videos
    n_videos: int = 300
    #: seed of everything (scenes, questions, split)
    seed: int = 0
    #: shortest ordinary video, seconds
    min_seconds: float = 4.0
    #: longest ordinary video, seconds
    max_seconds: float = 20.0
    #: fraction of videos made long (``long_min_seconds``..``long_max_seconds``); at least one
    #: long video whenever this is > 0
    long_fraction: float = 0.02
    long_min_seconds: float = 61.0
    long_max_seconds: float = 75.0
    #: fraction of videos written without an audio track (at least one whenever > 0)
    no_audio_fraction: float = 0.08
    #: frame sizes 'WxH' to choose from (portrait allowed; odd sizes are padded to even)
    sizes: list[str] = field(default_factory=lambda: ["176x144", "256x144", "320x180", "144x256",
                                                      "240x180", "480x270"])
    #: frame rates to choose from
    fps: list[float] = field(default_factory=lambda: [8.0, 10.0, 12.0, 15.0])
    #: instrument names (from the MUSIC-AVQA answers) used by the dataset
    instruments: list[str] = field(default_factory=lambda: list(DEFAULT_INSTRUMENTS))
    #: questions per video
    questions_per_video: int = 5
    #: train / val / test fractions of the videos
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    #: audio sample rate, Hz
    sample_rate: int = 16000
    #: x264 quality (lower = better, bigger)
    crf: int = 23
    #: worker processes for writing videos (-1 = one per usable CPU core; 0 = in this process,
    #: as ``extract --workers`` counts them)
    workers: int = -1
    #: annotation format of the questions (a key of QA_FORMATS): 'music-avqa' (9 types, open
    #: answers) or 'avqa' (multiple choice, 4 options, 6 of AVQA's 8 types)
    format: str = "music-avqa"
    #: question types asked (names of the format's types; empty = all it generates)
    types: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n_videos < 1:
            raise ValueError(f"n_videos must be >= 1, got {self.n_videos}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, "
                             f"{self.max_seconds}")
        if not 0 < self.long_min_seconds <= self.long_max_seconds:
            raise ValueError("need 0 < long_min_seconds <= long_max_seconds")
        for name in ("long_fraction", "no_audio_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or \
                sum(self.split_fractions) <= 0:
            raise ValueError(f"split_fractions: need 3 non-negative numbers, got "
                             f"{self.split_fractions}")
        if any(f <= 0 for f in self.fps):
            raise ValueError(f"fps: all rates must be positive, got {self.fps}")
        if self.questions_per_video < 1:
            raise ValueError("questions_per_video must be >= 1")
        if self.workers < -1:
            raise ValueError(f"workers must be >= -1 (-1 = one per usable core), got {self.workers}")
        if self.format not in QA_FORMATS:
            raise ValueError(f"format must be one of {sorted(QA_FORMATS)}, got {self.format!r}")
        unknown = sorted(set(self.types) - set(QA_FORMATS[self.format].types))
        if unknown:
            raise ValueError(f"types: {unknown} are not types of format {self.format!r}: "
                             f"{list(QA_FORMATS[self.format].types)}")
        self.size_tuples()
        palette(self.instruments)

    def size_tuples(self) -> tuple[tuple[int, int], ...]:
        out = []
        for s in self.sizes:
            try:
                w, h = (int(v) for v in s.lower().split("x"))
            except ValueError:
                raise ValueError(f"sizes: {s!r} is not WxH (e.g. 320x180)") from None
            if w < 32 or h < 32:
                raise ValueError(f"sizes: {s!r} is too small (at least 32x32)")
            if w + w % 2 in DECORD_BAD_WIDTHS:
                raise ValueError(f"sizes: {s!r}: decord 0.6.0 decodes frames {w + w % 2} pixels "
                                 "wide as 4-channel garbage (dmlc/decord#336); pick another width")
            out.append((w, h))
        if not out:
            raise ValueError("sizes: give at least one WxH")
        return tuple(out)

    def scene_spec(self) -> SceneSpec:
        return SceneSpec(min_seconds=self.min_seconds, max_seconds=self.max_seconds,
                         long_min_seconds=self.long_min_seconds,
                         long_max_seconds=self.long_max_seconds, sizes=self.size_tuples(),
                         fps=tuple(float(f) for f in self.fps))


@dataclass
class SynthPlan:
    """Scenes, the chosen questions (MUSIC-AVQA records) and the split of each video."""

    config: SynthConfig
    palette: list[dict]
    scenes: list[dict]
    split: dict[str, str]  # video_id -> split
    records: dict[str, list[dict]]  # split -> records


@dataclass
class SynthSummary:
    """What :func:`synthesize` wrote."""

    out_dir: str
    n_videos: int
    n_questions: int
    videos_per_split: dict[str, int]
    questions_per_split: dict[str, int]
    questions_per_type: dict[str, int]
    n_without_audio: int
    min_duration: float
    max_duration: float
    total_video_seconds: float
    n_written: int  # videos encoded by this call (the rest were already up to date)
    bytes_written: int
    wall_seconds: float


def _pick(n: int, fraction: float, rng: np.random.Generator) -> set[int]:
    k = 0 if fraction <= 0 else min(n, max(1, int(round(fraction * n))))
    return {int(i) for i in rng.permutation(n)[:k]}


def _split_sizes(n: int, fractions: list[float]) -> list[int]:
    total = sum(fractions)
    sizes = [int(math.floor(n * f / total)) for f in fractions]
    for k in np.argsort([-(n * f / total - s) for f, s in zip(fractions, sizes)], kind="stable"):
        if sum(sizes) >= n:
            break
        sizes[int(k)] += 1
    # give val/test at least one video when there are enough and they are asked for
    for k in (1, 2):
        if sizes[k] == 0 and fractions[k] > 0 and sizes[0] > 1:
            sizes[0] -= 1
            sizes[k] += 1
    return sizes


def record(video_id: str, question_id: int, q: dict) -> dict:
    """A MUSIC-AVQA annotation record for question ``q`` (an item of ``scene_answers``)."""
    return {"video_id": video_id, "question_id": question_id, "type": json.dumps(q["type"]),
            "question_content": q["template"], "templ_values": json.dumps(q["templ_values"]),
            "question_deleted": 0, "anser": q["answer"]}


@dataclass(frozen=True)
class QAFormat:
    """How one annotation format asks about a scene and writes a record."""

    #: scene -> candidate questions (items with type, template, question, answer)
    candidates: Callable[[dict], list[dict]]
    #: (video_id, question_id, candidate, rng, video row) -> annotation record
    record: Callable[..., dict]
    #: record -> its 'Group/Type' or type name
    type_of: Callable[[dict], str]
    #: the type names it generates
    types: tuple[str, ...]
    #: candidate -> its type name
    type_of_candidate: Callable[[dict], str] = lambda c: type_name(c["type"])


QA_FORMATS: dict[str, QAFormat] = {
    "music-avqa": QAFormat(scene_answers, lambda vid, qid, q, rng, row: record(vid, qid, q),
                           lambda r: type_name(json.loads(r["type"])),
                           tuple(type_name(t) for t in TYPES)),
    "avqa": QAFormat(avqa_candidates, avqa_record, lambda r: r["question_type"], AVQA_TYPES,
                     lambda c: c["type"][1]),
}


def plan(config: SynthConfig) -> SynthPlan:
    """Scenes, questions and split for ``config`` (no files written)."""
    ss = np.random.SeedSequence(config.seed)
    s_scene, s_layout, s_qa, s_split = ss.spawn(4)
    n = config.n_videos
    layout_rng = np.random.default_rng(s_layout)
    long_ids = _pick(n, config.long_fraction, layout_rng)
    mute_ids = _pick(n, config.no_audio_fraction, layout_rng)
    pal = palette(config.instruments)
    spec = config.scene_spec()
    scenes = []
    for i, child in enumerate(s_scene.spawn(n)):
        scene = make_scene(np.random.default_rng(child), f"synth_{i:05d}", spec, pal,
                           long=i in long_ids, has_audio=i not in mute_ids)
        scenes.append(scene)
    fmt = QA_FORMATS[config.format]
    keep = set(config.types or fmt.types)
    candidates = [[c for c in fmt.candidates(s) if fmt.type_of_candidate(c) in keep] for s in scenes]
    chosen = select_questions(candidates, config.questions_per_video,
                              int(np.random.default_rng(s_qa).integers(2**31)))
    sizes = _split_sizes(n, config.split_fractions)
    order = np.random.default_rng(s_split).permutation(n)
    split = {}
    for k, i in enumerate(order):
        split[scenes[int(i)]["video_id"]] = SPLITS[0] if k < sizes[0] else \
            SPLITS[1] if k < sizes[0] + sizes[1] else SPLITS[2]
    records: dict[str, list[dict]] = {s: [] for s in SPLITS}
    qid = 0
    option_rng = np.random.default_rng([config.seed, 5])   # multiple-choice option order
    for row, (scene, qs) in enumerate(zip(scenes, chosen)):
        for q in qs:
            qid += 1
            records[split[scene["video_id"]]].append(
                fmt.record(scene["video_id"], qid, q, option_rng, row))
    return SynthPlan(config, pal, scenes, split, records)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def scenes_document(p: SynthPlan) -> dict:
    """The content of ``scenes.json``."""
    config = {k: v for k, v in asdict(p.config).items() if k != "workers"}  # no effect on output
    return {"format": SCENES_FORMAT, "generator": "synth.generate", "config": config,
            "palette": p.palette, "split": p.split, "scenes": p.scenes}


def synthesize(out_dir: str | Path, n_videos: int | None = None, seed: int | None = None,
               config: SynthConfig | None = None, progress=None, **overrides) -> SynthSummary:
    """Write the dataset of ``config`` (or ``SynthConfig(n_videos=.., seed=.., **overrides)``)
    into ``out_dir``.  Re-running with the same config re-encodes only missing videos.
    ``progress(done, total)`` is called after each video.

    ``out_dir`` must be empty, missing, or an earlier synth output (it has ``scenes.json``);
    the files of an earlier output with another config are removed first.
    """
    t0 = time.perf_counter()
    if config is None:
        kw = dict(overrides)
        if n_videos is not None:
            kw["n_videos"] = n_videos
        if seed is not None:
            kw["seed"] = seed
        config = SynthConfig(**kw)
    elif n_videos is not None or seed is not None or overrides:
        raise ValueError("give either config or n_videos/seed/overrides, not both")
    out = Path(out_dir)
    scenes_path = out / "scenes.json"
    if out.exists() and any(out.iterdir()) and not scenes_path.is_file():
        raise SynthError(f"{out}: not empty and not a synth output (no scenes.json); "
                              "choose an empty or new folder")
    p = plan(config)
    doc = _json_bytes(scenes_document(p))
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    if not (scenes_path.is_file() and scenes_path.read_bytes() == doc):
        # another config: nothing of the old output is valid.  scenes.json goes first, so an
        # interrupted run resumes (every video file is complete or absent, see write_av);
        # the annotation files come last and mark a complete output.
        for f in list((out / "annotations").glob("avqa-*.json")) + \
                list((out / "videos").glob("synth_*.mp4")):
            f.unlink()
        atomic_write(scenes_path, doc)
    todo = [s for s in p.scenes if not (out / s["file"]).is_file()]
    n_bytes = 0
    workers = usable_cores() if config.workers < 0 else config.workers
    workers = max(1, min(workers, len(todo)))
    done = 0
    if workers == 1:
        for s in todo:
            n_bytes += write_scene(s, out, config.sample_rate, config.crf)[1]
            done += 1
            if progress:
                progress(done, len(todo))
    elif todo:
        # longest first keeps the workers evenly busy
        todo_sorted = sorted(todo, key=lambda s: -s["duration"] * s["fps"] * s["width"] * s["height"])
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(write_scene, s, out, config.sample_rate, config.crf)
                    for s in todo_sorted]
            for f in futs:
                n_bytes += f.result()[1]
                done += 1
                if progress:
                    progress(done, len(todo))
    for split, recs in p.records.items():
        atomic_write(out / "annotations" / f"avqa-{split}.json", _json_bytes(recs))
    durations = [s["duration"] for s in p.scenes]
    all_recs = [r for recs in p.records.values() for r in recs]
    return SynthSummary(
        out_dir=str(out),
        n_videos=len(p.scenes),
        n_questions=len(all_recs),
        videos_per_split={s: sum(1 for v in p.split.values() if v == s) for s in SPLITS},
        questions_per_split={s: len(r) for s, r in p.records.items()},
        questions_per_type=dict(Counter(QA_FORMATS[config.format].type_of(r) for r in all_recs)),
        n_without_audio=sum(1 for s in p.scenes if not s["has_audio"]),
        min_duration=min(durations), max_duration=max(durations),
        total_video_seconds=round(sum(durations), 1),
        n_written=len(todo), bytes_written=n_bytes,
        wall_seconds=round(time.perf_counter() - t0, 2))


def load_scenes(path: str | Path) -> dict:
    """Read ``scenes.json`` (the file or its folder), checking its format."""
    path = Path(path)
    if path.is_dir():
        path = path / "scenes.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("format") != SCENES_FORMAT or "scenes" not in doc:
        raise SynthError(f"{path}: not a synth scenes file (format {doc.get('format')!r})")
    return doc


__all__ = ["SynthConfig", "SynthPlan", "SynthSummary", "plan", "synthesize", "load_scenes",
           "scene_answers", "record", "TYPES", "QA_FORMATS"]
