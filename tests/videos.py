"""Small real test videos (H.264 + AAC mp4 written with :func:`synth.avwrite.write_av`).

Every second of a test video has its own content, so tests can tell which second a segment came
from: the frames of second ``s`` show :func:`second_image` (a seeded random picture) and the
audio of second ``s`` is a tone at :func:`second_hz` Hz.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

from synth.avwrite import write_av

SAMPLE_RATE = 16000


def second_image(second: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """The picture shown during ``second`` (blocky, so H.264 keeps it recognisable)."""
    rng = np.random.default_rng([seed, second])
    small = rng.integers(0, 256, (max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
    big = np.kron(small, np.ones((8, 8, 1), np.uint8))
    out = np.zeros((height, width, 3), np.uint8)
    h, w = min(height, big.shape[0]), min(width, big.shape[1])
    out[:h, :w] = big[:h, :w]
    return out


def second_hz(second: int) -> float:
    return 300.0 + 150.0 * (second % 20)


def make_video(path: str | Path, seconds: float, fps: float = 10.0, size: tuple[int, int] = (64, 48),
               audio: bool = True, seed: int = 0) -> Path:
    """Write a ``seconds``-long ``size`` = (width, height) video at ``fps``; with a tone per
    second when ``audio``.  Returns the path."""
    width, height = size
    n = max(1, int(round(seconds * fps)))
    frames = np.stack([second_image(int(i / fps), width, height, seed) for i in range(n)])
    wav = None
    if audio:
        t = np.arange(int(round(n / fps * SAMPLE_RATE))) / SAMPLE_RATE
        hz = np.asarray([second_hz(int(x)) for x in t])
        wav = (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return write_av(path, frames, fps=fps, audio=wav, sample_rate=SAMPLE_RATE)


def write_audio_only(path: Path, seconds: float = 2.0) -> Path:
    """A real mp4/m4a holding one AAC stream and no video stream."""
    wav = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE)
           ).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=SAMPLE_RATE)
        s.layout = "mono"
        for pos in range(0, len(wav), 1024):
            fr = av.AudioFrame.from_ndarray(wav[pos:pos + 1024].reshape(1, -1), format="flt",
                                            layout="mono")
            fr.sample_rate, fr.pts = SAMPLE_RATE, pos
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def make_corrupt(path: str | Path) -> Path:
    """A file named like a video whose content is not one (an mp4 'ftyp' box, then garbage)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    path.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" +
                     rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


def write_music_annotations(path: str | Path, questions: list[tuple[int, str, str, str, str]]) -> Path:
    """A MUSIC-AVQA style annotation file.  ``questions``: (question_id, video_id, type_json,
    template, answer), e.g. ``(1, "v0", '["Audio", "Counting"]', "How many instruments are
    sounding?", "two")``; templates here carry no placeholders."""
    recs = [{"video_id": vid, "question_id": qid, "type": typ, "question_content": text,
             "templ_values": "[]", "anser": ans, "question_deleted": 0}
            for qid, vid, typ, text, ans in questions]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recs), encoding="utf-8")
    return path


def store_by_id(entry: str | Path) -> tuple[dict, dict]:
    """A store's content keyed by id, independent of shard layout: ({video_id: {field: value}},
    {question_id: {field: value}}).  Source paths/mtimes are left out (they name the inputs)."""
    from store import FeatureStore

    vids, qs = {}, {}
    with FeatureStore(entry) as fs:
        vfields = ["audio", "audio_present", "visual", "n_segments", "duration", "source_size"]
        if fs.has_field("videos", "visual_patches"):
            vfields.append("visual_patches")
        cols = {f: fs.videos(f) for f in vfields}
        for i, v in enumerate(fs.video_ids.tolist()):
            vids[v] = {f: cols[f][i] for f in vfields}
        qfields = ["video_id", "split", "type", "answer", "answer_text", "text", "sentence",
                   "tokens", "token_mask"]
        qcols = {f: fs.questions(f) for f in qfields}
        for i, q in enumerate(fs.question_ids.tolist()):
            qs[q] = {f: qcols[f][i] for f in qfields}
    return vids, qs


def assert_same_store(a: str | Path, b: str | Path, atol: float = 0.0) -> None:
    """Two stores hold the same videos and questions with equal arrays (to ``atol``)."""
    va, qa = store_by_id(a)
    vb, qb = store_by_id(b)
    assert sorted(va) == sorted(vb), (sorted(va), sorted(vb))
    assert sorted(qa) == sorted(qb), (sorted(qa), sorted(qb))
    for rows_a, rows_b in ((va, vb), (qa, qb)):
        for key in rows_a:
            for f, x in rows_a[key].items():
                y = rows_b[key][f]
                if isinstance(x, np.ndarray) and x.dtype.kind == "f":
                    np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32),
                                               atol=atol, rtol=0, err_msg=f"{key} {f}")
                else:
                    assert np.array_equal(np.asarray(x), np.asarray(y)), (key, f, x, y)



#: videos of :func:`make_resume_folder` in the shared folder of the resume, soak and dask tests
RESUME_VIDEOS = 6
#: extraction settings of those tests (seeded random encoders, one video per shard)
RESUME_OPTS = dict(T=4, clip_weights="random:0", vggish_weights="random:0", text_len=8,
                   batch_size=4, image_size=64, shard_size=1, workers=0, device="cpu",
                   text_batch_size=4)


def extract_command(videos: Path, out: Path, opts: dict) -> list[str]:
    """``extract --videos … --out …`` with ``opts`` (ExtractConfig fields) as its options, so
    a test's command and its in-process reference share one settings dict."""
    args = ["extract", "--videos", str(videos), "--out", str(out)]
    for k, v in opts.items():
        args += ["-T" if k == "T" else "--" + k.replace("_", "-"), str(v)]
    return args


def make_resume_folder(d: Path, n_videos: int) -> Path:
    """``n_videos`` short real videos (every third without audio), one corrupt file and a
    MUSIC-AVQA annotation file with one question per video under ``d/qa`` (found under --videos
    when --annotations is not given): the input of the resume and soak tests."""
    for i in range(n_videos):
        make_video(d / f"v{i}.mp4", 1.0 + 0.5 * i, audio=i % 3 != 1, seed=i)
    make_corrupt(d / "broken.mp4")
    write_music_annotations(d / "qa" / "music-val.json", [
        (100 + i, f"v{i}", '["Audio", "Counting"]', "How many instruments are sounding?", "one")
        for i in range(n_videos)])
    return d
