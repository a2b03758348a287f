"""Hostile inputs: one extraction run over a folder holding every kind of bad or unusual video
file we know of, bad annotation files, damaged stores handed to training, and a disk that fills
up while a shard is written.  Each input has one documented outcome (docs/GUARANTEES.md): it is
extracted correctly, or recorded as a failure with a clear reason while the run goes on, or the
run is refused up front with a message naming the file (and record) — and nothing is ever
written outside the output."""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import resource
import shutil
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synth.avwrite import write_av
from extract.config import ExtractConfig
from extract.decode import DecodeError, DecodeSpec, decode_video, read_audio, resized_size
from extract.pipeline import extract
from store import FeatureStore, verify_store
from store.checksums import block_crcs, file_sha256
from store.index import read_index
from videos import (SAMPLE_RATE, make_video, second_image, store_by_id, write_audio_only,
                    write_music_annotations)

torch.set_num_threads(2)
S = 64  # CLIP input size of these runs
BASE = dict(T=4, clip_weights="random:0", vggish_weights="random:0", text_len=8, batch_size=8,
            image_size=S, shard_size=2, device="cpu", text_batch_size=8)
CLI_OPTS = ["-T", "4", "--clip-weights", "random:0", "--vggish-weights", "random:0",
            "--text-len", "8", "--batch-size", "8", "--image-size", str(S), "--shard-size", "2",
            "--workers", "0", "--device", "cpu", "--quiet"]
#: readable despite chmod 000 (root): permissions cannot make a file unreadable here
ROOT = os.geteuid() == 0


def invoke(args: list[str]):
    from cli import app

    return CliRunner().invoke(app, args, env={"COLUMNS": "1000"})


# ---- making hostile files ----------------------------------------------------------------------


def write_faststart(src: Path, dst: Path) -> Path:
    """Remux ``src`` with the index (moov) before the media data, as streaming sites serve mp4."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4",
                                           options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for pkt in inp.demux():
            if pkt.dts is None:
                continue
            pkt.stream = streams[pkt.stream.index]
            out.mux(pkt)
    return dst


#: frame start times of the variable-frame-rate video (seconds); frame i shows second_image(i)
VFR_TIMES = [0.0, 0.1, 0.15, 1.3, 1.35, 2.9, 3.45, 3.6]
LONG_SECONDS = 600


def make_hostile_folder(root: Path) -> dict:
    """Every hostile input in one folder; returns {name: path} of what was made."""
    v = root / "videos"
    made = {"ok": make_video(v / "ok.mp4", 2.0, audio=True, seed=1)}
    made["mute"] = make_video(v / "mute.mp4", 2.0, audio=False, seed=2)
    made["blip"] = make_video(v / "blip.mp4", 0.4, fps=10, audio=True, seed=3)
    made["qcif"] = make_video(v / "qcif.mp4", 2.0, fps=5, size=(176, 144), audio=True, seed=4)
    made["portrait"] = make_video(v / "portrait.mp4", 2.0, fps=5, size=(72, 128), audio=True,
                                  seed=5)
    # 10 minutes, made cheap: 32x32 pixels at 1 frame per second (audio for the full length)
    t = np.arange(LONG_SECONDS * SAMPLE_RATE) / SAMPLE_RATE
    made["long"] = write_av(v / "long.mp4", np.stack([second_image(s, 32, 32, 6) for s in
                                                      range(LONG_SECONDS)]), fps=1,
                            audio=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    made["vfr"] = write_av(v / "vfr.mp4", np.stack([second_image(i, 64, 48, 7) for i in
                                                    range(len(VFR_TIMES))]), fps=10,
                           frame_times=VFR_TIMES)
    made["inner"] = make_video(v / "folder.mp4" / "inner.mp4", 1.0, audio=True, seed=8)
    made["spaced"] = make_video(v / "with space é.mp4", 1.0, audio=True, seed=9)
    good = made["ok"].read_bytes()
    (v / "zero.mp4").write_bytes(b"")
    (v / "truncated.mp4").write_bytes(good[:len(good) // 2])       # index (moov) at the end: lost
    fast = write_faststart(made["ok"], root / "fast.mp4")
    data = fast.read_bytes()
    (v / "truncated_faststart.mp4").write_bytes(data[:int(len(data) * 0.6)])  # media cut short
    (v / "text.mp4").write_text("this is a text file, not a video\n" * 20, encoding="utf-8")
    write_audio_only(v / "audio_only.mp4")
    write_audio_only(v / "audio_only.m4a")                         # not a video extension
    (v / "notes.txt").write_text("not a video")
    shutil.copy(made["ok"], v / ".hidden.mp4")
    shutil.copy(made["ok"], v / "clip..v2.mp4")                    # '..' is refused in ids
    with open(os.fsencode(v) + b"/latin\xe9.mp4", "wb") as fh:     # file name not UTF-8
        fh.write(good)
    os.symlink(root / "nowhere.mp4", v / "dangling.mp4")
    os.mkfifo(v / "fifo.mp4")
    os.symlink(".", v / "loop")                                    # a folder symlink loop
    shutil.copy(made["ok"], v / "locked.mp4")
    os.chmod(v / "locked.mp4", 0)
    (v / "private").mkdir()
    shutil.copy(made["ok"], v / "private" / "in_private.mp4")
    os.chmod(v / "private", 0)
    return made


QUESTIONS = [
    (1, "ok", '["Audio", "Counting"]', "How many instruments are sounding?", "two"),
    (2, "zero", '["Audio", "Counting"]', "How many instruments are sounding?", "one"),  # failed
    (3, "nosuch", '["Visual", "Location"]', "Where is the violin?", "left"),          # missing
    (4, "mute", '["Audio", "Counting"]', "How many instruments are sounding?", "theremin"),
    (5, "blip", '["Audio", "Singing"]', "Is anyone singing?", "yes"),                  # type
    (6, "long", '["Visual", "Counting"]', "How many violins are there?", "one"),
]


def tree(root: Path, skip: Path | None = None) -> dict:
    """name -> (size, mtime_ns) of every entry under ``root`` except ``skip`` (symlinks not
    followed; unreadable folders listed as themselves)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if skip is not None and Path(dirpath) == skip:
            dirs[:] = []
            continue
        for n in dirs + files:
            p = Path(dirpath) / n
            if skip is not None and p == skip:
                continue
            st = os.lstat(p)
            out[os.fsdecode(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One extraction (shards of 2 videos) over the hostile folder."""
    root = tmp_path_factory.mktemp("hostile")
    made = make_hostile_folder(root)
    ann = write_music_annotations(root / "ann" / "music-test.json", QUESTIONS)
    out = root / "out" / "feats.h5"
    cwd = root / "cwd"
    cwd.mkdir()
    before = tree(root)
    cfg = ExtractConfig(videos=str(root / "videos"), annotations=str(ann), out=str(out),
                        keep_unknown=True, workers=0, **BASE)
    old = os.getcwd()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("extract").addHandler(handler)
    try:
        os.chdir(cwd)
        summary = extract(cfg, progress=False)
    finally:
        os.chdir(old)
        logging.getLogger("extract").removeHandler(handler)
        after = tree(root, skip=root / "out")
        os.chmod(root / "videos" / "locked.mp4", 0o644)
        os.chmod(root / "videos" / "private", 0o755)
    return SimpleNamespace(root=root, made=made, out=out, summary=summary, before=before,
                           after=after, logs=[r.getMessage() for r in records],
                           failures={Path(p).name: e for p, e in summary.failures})


EXTRACTED = {"ok", "mute", "blip", "qcif", "portrait", "long", "vfr", "inner", "with space é"}
FAILED = {  # file name -> words the recorded reason must contain
    "zero.mp4": "cannot open container",
    "truncated.mp4": "cannot open container",
    "truncated_faststart.mp4": "cannot decode video",
    "text.mp4": "cannot open container",
    "audio_only.mp4": "no video stream",
    "clip..v2.mp4": "invalid video id",
    "latin\\xe9.mp4": "not valid UTF-8",
    "dangling.mp4": "broken symbolic link",
    "fifo.mp4": "not a regular file",
}


def test_every_file_has_its_outcome_and_the_run_goes_on(run):
    with FeatureStore(run.out) as fs:
        ids = set(fs.video_ids.tolist())
        stored_failures = {Path(f["path"]).name: f["error"] for f in fs.failures}
    want_ids = set(EXTRACTED) | ({"locked", "in_private"} if ROOT else set())
    assert ids == want_ids
    want_failed = dict(FAILED)
    if not ROOT:
        want_failed["locked.mp4"] = "Permission denied"
        want_failed["private"] = "cannot list this folder"
    assert set(run.failures) == set(want_failed), run.failures
    for name, words in want_failed.items():
        assert words in run.failures[name], (name, run.failures[name])
        assert name in run.failures[name] or name == "private"      # the reason names the file
    assert stored_failures == run.failures                  # recorded in the store as well
    s = run.summary
    assert s.videos_found == len(want_ids) + len(want_failed)   # .m4a, .txt, hidden: not inputs
    assert s.videos_extracted == len(want_ids)
    assert not verify_store(run.out)


def test_nothing_is_written_outside_the_output(run):
    assert run.after == run.before            # inputs, annotations, the rest: untouched
    assert not any((run.root / "cwd").iterdir())
    out_files = sorted(p.relative_to(run.out.parent).as_posix() for p in run.out.parent.rglob("*"))
    assert out_files[0] == "feats.h5" and out_files[1] == "feats.shards"
    assert all(n.startswith("feats.shards/part-") and n.endswith(".h5") for n in out_files[2:])


def test_per_video_facts(run):
    vids, _ = store_by_id(run.out)
    facts = {v: (int(r["n_segments"]), bool(r["audio_present"]), float(r["duration"]))
             for v, r in vids.items()}
    assert facts["mute"][:2] == (2, False) and not vids["mute"]["audio"].any()
    assert facts["blip"][:2] == (1, True) and facts["blip"][2] == pytest.approx(0.4, abs=0.01)
    assert facts["long"][:2] == (4, True)
    assert facts["long"][2] == pytest.approx(LONG_SECONDS, abs=0.5)
    assert facts["vfr"][:2] == (4, False) and facts["vfr"][2] == pytest.approx(3.65, abs=0.02)
    for v in ("qcif", "portrait", "ok"):
        assert facts[v][:2] == (2, True)
    assert vids["with space é"]["n_segments"] == 1
    # padding repeats the last real segment
    for v, (n, _, _) in facts.items():
        for t in range(n, 4):
            assert np.array_equal(vids[v]["visual"][t], vids[v]["visual"][n - 1])


@pytest.mark.parametrize("reader", ["pyav", "decord"])
def test_read_audio_of_the_hostile_files_with_each_reader(run, reader):
    """What ``read_audio`` itself makes of them (the run above decodes the video first)."""
    v = run.root / "videos"
    for name in ("zero.mp4", "truncated.mp4", "text.mp4"):
        with pytest.raises(DecodeError, match=f"{name}: cannot decode audio: .*Invalid data"):
            read_audio(str(v / name), SAMPLE_RATE, reader)
    assert read_audio(str(v / "mute.mp4"), SAMPLE_RATE, reader) is None
    assert read_audio(str(v / "vfr.mp4"), SAMPLE_RATE, reader) is None
    whole = read_audio(str(v / "ok.mp4"), SAMPLE_RATE, reader)
    assert whole.dtype == np.float32 and len(whole) >= 2 * SAMPLE_RATE
    assert len(read_audio(str(v / "audio_only.mp4"), SAMPLE_RATE, reader)) >= 2 * SAMPLE_RATE
    cut = v / "truncated_faststart.mp4"
    if reader == "pyav":   # decord stops at the first bad packet and returns what came before
        with pytest.raises(DecodeError, match="cannot decode audio: Invalid data"):
            read_audio(str(cut), SAMPLE_RATE, reader)
    else:
        assert 0 < len(read_audio(str(cut), SAMPLE_RATE, reader)) < len(whole)


def test_questions_unknown_labels_kept_missing_videos_counted_and_warned(run):
    s = run.summary
    assert (s.questions_found, s.questions_added, s.questions_without_video) == (6, 4, 2)
    assert any("2 questions are about videos that are not in the store" in m for m in run.logs)
    _, qs = store_by_id(run.out)
    assert sorted(qs) == [1, 4, 5, 6]
    assert qs[4]["answer"] == -1 and qs[4]["answer_text"] == "theremin"   # --keep-unknown
    assert qs[5]["type"] == -1 and qs[1]["answer"] >= 0 and qs[1]["type"] >= 0


# ---- the sampling rules on the hostile files themselves --------------------------------------


def nearest(img: np.ndarray, size: int = S) -> np.ndarray:
    """What the decoder shows for a source picture: short side scaled to ``size``, centre crop."""
    h, w = img.shape[:2]
    rw, rh = resized_size(w, h, size)
    big = img[(np.arange(rh) * h / rh).astype(int)][:, (np.arange(rw) * w / rw).astype(int)]
    top, left = (rh - size) // 2, (rw - size) // 2
    return big[top:top + size, left:left + size].astype(np.float32)


def which(frame: np.ndarray, candidates: list[np.ndarray]) -> int:
    return int(np.argmin([np.abs(frame.astype(np.float32) - c).mean() for c in candidates]))


def test_ten_minute_video_truncate_and_uniform(run):
    cands = [nearest(second_image(s, 32, 32, 6)) for s in range(LONG_SECONDS)]
    t = decode_video(run.made["long"], DecodeSpec(T=4, sampling="truncate", image_size=S))
    assert t.n_segments == 4 and [which(f, cands) for f in t.frames] == [0, 1, 2, 3]
    u = decode_video(run.made["long"], DecodeSpec(T=4, sampling="uniform", image_size=S))
    # centres at (i + 0.5) * 600 / 4 s
    assert u.n_segments == 4 and [which(f, cands) for f in u.frames] == [75, 225, 375, 525]
    assert u.audio_present and u.audio[3].std() > 0


def test_variable_frame_rate_takes_the_frame_shown_at_each_centre(run):
    cands = [nearest(second_image(i, 64, 48, 7)) for i in range(len(VFR_TIMES))]
    d = decode_video(run.made["vfr"], DecodeSpec(T=5, image_size=S))
    # centres 0.5, 1.5, 2.5, 3.5 s show the frames that started at 0.15, 1.35, 1.35, 3.45 s
    assert d.n_segments == 4 and [which(f, cands) for f in d.frames] == [2, 4, 4, 6, 6]


@pytest.mark.parametrize("name,size,seed", [("qcif", (176, 144), 4), ("portrait", (72, 128), 5)])
def test_small_and_portrait_frames_are_centre_cropped(run, name, size, seed):
    cands = [nearest(second_image(s, *size, seed)) for s in range(2)]
    d = decode_video(run.made[name], DecodeSpec(T=2, image_size=S))
    assert d.frames.shape == (2, S, S, 3) and [which(f, cands) for f in d.frames] == [0, 1]


# ---- runs refused up front: nothing written ------------------------------------------------


def music_record(video_id: str = "ok", qid: int = 1, **over) -> dict:
    rec = {"video_id": video_id, "question_id": qid, "type": '["Audio", "Counting"]',
           "question_content": "How many instruments are sounding?", "templ_values": "[]",
           "anser": "two", "question_deleted": 0}
    rec.update(over)
    return rec


BAD_ANNOTATIONS = {
    "unknown_answer": ([music_record(), music_record(qid=2, anser="theremin")],
                       r"record 1: field 'anser': answer 'theremin'"),
    "unknown_type": ([music_record(), music_record(qid=2, type='["Audio", "Singing"]')],
                     r"record 1: field 'type'"),
    "slash_id": ([music_record(), music_record("a/b", 2)], r"record 1: field 'video_id'"),
    "dotdot_id": ([music_record(), music_record(qid=2), music_record("../x", 3)],
                  r"record 2: field 'video_id'"),
}


@pytest.fixture(scope="module")
def small_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("small") / "videos"
    make_video(d / "ok.mp4", 1.0, audio=True)
    return d


def assert_refused_cleanly(res, out: Path, *words: str) -> None:
    text = " ".join(res.output.split())       # undo rich's line wrapping
    assert res.exit_code == 2, res.output
    for w in words:
        assert w in text, (w, res.output)
    assert list(out.parent.iterdir()) == []   # no store, no shard, no lock file left


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_records_refuse_the_run_naming_file_and_record(case, small_videos, tmp_path):
    records, match = BAD_ANNOTATIONS[case]
    ann = tmp_path / "music-val.json"
    ann.write_text(json.dumps(records), encoding="utf-8")
    out = tmp_path / "out" / "feats.h5"
    res = invoke(["extract", "--videos", str(small_videos), "--annotations", str(ann), "--out",
                  str(out)] + CLI_OPTS)
    assert re.search(match, " ".join(res.output.split())), res.output
    assert_refused_cleanly(res, out, "music-val.json")


def test_malformed_json_names_file_and_record_index(small_videos, tmp_path):
    ann = tmp_path / "music-val.json"
    good = json.dumps([music_record(qid=i) for i in range(3)])
    ann.write_text(good[:-1] + ', {"video_id": "ok", "question_id": 9,, }]', encoding="utf-8")
    out = tmp_path / "out" / "feats.h5"
    res = invoke(["extract", "--videos", str(small_videos), "--annotations", str(ann), "--out",
                  str(out)] + CLI_OPTS)
    assert_refused_cleanly(res, out, "music-val.json", "not valid JSON in record 3")


def test_two_files_with_the_same_stem_refuse_the_run_naming_both(tmp_path):
    make_video(tmp_path / "v" / "a" / "clip.mp4", 1.0, audio=False)
    make_video(tmp_path / "v" / "b" / "clip.mkv", 1.0, audio=False)
    out = tmp_path / "out" / "feats.h5"
    res = invoke(["extract", "--videos", str(tmp_path / "v"), "--out", str(out)] + CLI_OPTS)
    assert_refused_cleanly(res, out, "duplicate video id 'clip'",
                           str(tmp_path / "v" / "a" / "clip.mp4"),
                           str(tmp_path / "v" / "b" / "clip.mkv"))


# ---- store integrity: checksums, damaged stores and training, a disk that fills up ---------


def test_checksums_are_recorded_at_write_time_from_the_rows_written(run):
    """Each shard's stored block CRCs equal CRCs computed from the arrays read back, and the
    index's sha256 equals the shard file's (both recorded when the shard was written/indexed)."""
    import h5py

    index = read_index(run.out)
    for name, sha in zip(index.shard, index.shard_sha256):
        path = run.out.parent / "feats.shards" / name
        assert file_sha256(path) == sha
        with h5py.File(path, "r") as f:
            for group in ("videos", "questions", "failures"):
                for key, ds in f[group].items():
                    rows = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
                    assert np.array_equal(f[f"checksums/{group}/{key}"][()], block_crcs(rows)), \
                        (name, group, key)


def train_args(store: Path, out: Path) -> list[str]:
    return ["train", "--store", str(store), "--out", str(out), "--epochs", "1", "--no-progress",
            "--set", "num_threads=1", "--set", "model.d_model=16", "--set", "model.n_layers=1"]


@pytest.mark.parametrize("damage", ["truncated", "unindexed", "missing"])
def test_train_refuses_a_store_that_fails_the_quick_check(tmp_path, damage):
    from storegen import make_store
    from store_helpers import video_batch, write_shard

    from train.data import check_store_quick

    gen = make_store(tmp_path / "s" / "feats.h5", n_videos=12, seed=1)
    check_store_quick(str(gen.path))                 # sound before the damage
    shards = sorted((tmp_path / "s" / "feats.shards").glob("part-*.h5"))
    if damage == "truncated":
        with open(shards[1], "r+b") as fh:
            fh.truncate(shards[1].stat().st_size // 2)
        named = shards[1].name
    elif damage == "missing":
        shards[0].unlink()
        named = shards[0].name
    else:      # a complete shard the index does not list (an extraction that did not finish)
        attrs = {k: v for k, v in gen.attrs.items() if k not in ("kind", "n_videos", "n_questions",
                                                                 "n_failures")}
        named = write_shard(gen.path, attrs, videos=[video_batch(np.random.default_rng(0),
                                                                 ["late"], attrs)]).name
    res = invoke(train_args(gen.path, tmp_path / "runs"))
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "fails the quick integrity check" in text and named in text
    assert f"python cli.py store verify {gen.path}" in text
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _extract_with_file_size_limit(cfg: ExtractConfig, limit_bytes: int, conn) -> None:
    """Child-process body: extract with RLIMIT_FSIZE set (a write past ``limit_bytes`` fails
    with EFBIG, as on a full disk); sends back the error message, or None."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    try:
        extract(cfg, progress=False)
        conn.send(None)
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")


def test_write_error_while_writing_a_shard_leaves_a_temp_file_and_the_store_intact(tmp_path):
    """A real failing write (the kernel's file-size limit, EFBIG, in a child process): the shard
    being written stays a temp file, the error names it, the shards before it and the index are
    intact, and running again without the limit resumes to the store of an uninterrupted run."""
    from videos import assert_same_store

    src = tmp_path / "src"
    for i in range(4):
        make_video(src / f"v{i}.mp4", 1.0 + i, audio=True, seed=i)
    ref = tmp_path / "ref" / "feats.h5"
    opts = dict(BASE, workers=0, shard_size=1)
    extract(ExtractConfig(videos=str(src), out=str(ref), **opts), progress=False)
    vids = tmp_path / "videos"
    vids.mkdir()
    for i in range(2):
        os.link(src / f"v{i}.mp4", vids / f"v{i}.mp4")             # same bytes, same mtime
    out = tmp_path / "feats.h5"
    extract(ExtractConfig(videos=str(vids), out=str(out), **opts), progress=False)
    before, _ = store_by_id(out)
    index_bytes = out.read_bytes()
    shard_size = max(p.stat().st_size for p in (tmp_path / "feats.shards").glob("part-*.h5"))
    for i in range(2, 4):
        os.link(src / f"v{i}.mp4", vids / f"v{i}.mp4")
    # a forked child (it inherits the encoders built here) whose file writes fail past the limit
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_extract_with_file_size_limit,
                        args=(ExtractConfig(videos=str(vids), out=str(out), **opts),
                              shard_size // 4, send))               # the entry file still fits
    child.start()
    msg = recv.recv() if recv.poll(240) else "no answer from the child"
    child.join(60)
    assert msg is not None and msg.startswith("ExtractError: could not write"), msg
    assert ".part-00002.h5.tmp" in msg and "File too large" in msg
    assert "run the same command again to resume" in msg
    assert sorted(p.name for p in (tmp_path / "feats.shards").iterdir()) == \
        [".part-00002.h5.tmp", "part-00000.h5", "part-00001.h5"]
    assert out.read_bytes() == index_bytes
    result = verify_store(out)
    assert result == [] and any(".part-00002.h5.tmp" in n for n in result.notes)
    after, _ = store_by_id(out)
    assert sorted(after) == sorted(before) == ["v0", "v1"]
    for v in before:
        assert np.array_equal(after[v]["visual"], before[v]["visual"])
    again = extract(ExtractConfig(videos=str(vids), out=str(out), **opts), progress=False)
    assert (again.videos_skipped, again.videos_extracted) == (2, 2)
    assert_same_store(out, ref)
    assert not verify_store(out) and not list((tmp_path / "feats.shards").glob(".*.tmp"))
