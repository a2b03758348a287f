"""End-to-end extraction on real mp4 files: shapes, padding, audio flag, failures, questions,
batched = one-video-at-a-time, weight files = seeded random, questions-only, CLI exit codes."""
from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from extract.config import ExtractConfig
from extract.discover import stat_video
from extract.encoders import get_encoders
from extract.encode import extract_video_reference
from extract.errors import ExtractError
from extract.pipeline import extract
from extract.weights import save_weights, sha256_file
from store import FeatureStore, store_info, verify_store
from videos import (make_corrupt, make_video, store_by_id, write_music_annotations)

torch.set_num_threads(2)

# precision fp32: the store is compared with the reference paths (open_clip's encode_text, one
# video at a time), which agree to float16 storage in float32; 'auto' is bf16 on CPUs with native bf16
BASE = dict(T=4, clip_weights="random:0", vggish_weights="random:0", text_len=8, batch_size=6, image_size=64,
            shard_size=2, workers=0, device="cpu", text_batch_size=4, precision="fp32")
# float16 storage: values of order 1 keep ~3 significant digits
F16 = dict(rtol=2e-2, atol=2e-3)

QUESTIONS = [
    (1, "a", '["Audio", "Counting"]', "How many instruments are sounding?", "two"),
    (2, "b", '["Visual", "Location"]', "Where is the violin?", "left"),
    (3, "c", '["Audio-Visual", "Existential"]', "Is there a voiceover?", "yes"),
    (4, "zz", '["Audio", "Counting"]', "How many instruments are sounding?", "one"),   # no video
    (5, "bad", '["Audio", "Counting"]', "How many instruments are sounding?", "one"),  # fails
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("extract")
    vids = d / "videos"
    make_video(vids / "a.mp4", 3.0, audio=True)                                     # 3 of 4 real
    make_video(vids / "sub" / "b.mp4", 6.3, size=(96, 64), audio=False, seed=1)     # long, mute
    make_video(vids / "c.mp4", 2.2, audio=True, seed=2)                             # 2 real
    make_video(vids / "tiny.mp4", 1.2, fps=12, size=(16, 12), audio=True, seed=3)   # 1 real, tiny
    make_corrupt(vids / "bad.mp4")
    ann = write_music_annotations(d / "ann" / "qa-test.json", QUESTIONS)
    cfg = ExtractConfig(videos=str(vids), annotations=str(ann), out=str(d / "feats.h5"), **BASE)
    summary = extract(cfg, progress=False)
    return SimpleNamespace(dir=d, vids=vids, ann=ann, cfg=cfg, summary=summary)


def test_store_shapes_padding_audio_flag_failures(data):
    s = data.summary
    assert (s.videos_found, s.videos_extracted, len(s.failures)) == (5, 4, 1)
    assert s.failures[0][0].endswith("bad.mp4") and "bad.mp4" in s.failures[0][1]
    assert s.random_weights and all("random:0" in r for r in s.random_weights)
    assert not verify_store(data.cfg.out)
    with FeatureStore(data.cfg.out) as fs:
        a = fs.attrs
        assert (a["T"], a["visual_dim"], a["text_dim"], a["text_len"], a["patches"]) == (4, 512, 512, 8, 0)
        assert a["encoders"]["visual"] == {"name": "ViT-B-32", "weights": "random:0"}
        assert a["encoders"]["audio"]["weights"] == "random:0"
        assert a["extractor_config"]["image_size"] == 64 and a["dataset"] == "music-avqa"
        assert (a["extractor_config"]["precision"], a["extractor_config"]["compute_precision"]) == \
            ("fp32", "fp32")
        assert [f["path"] for f in fs.failures] == [str(data.vids / "bad.mp4")]
        ids = fs.video_ids.tolist()
        assert sorted(ids) == ["a", "b", "c", "tiny"]
        row = {v: i for i, v in enumerate(ids)}
        audio, visual = fs.videos("audio"), fs.videos("visual")
        assert audio.shape == (4, 4, 128) and visual.shape == (4, 4, 512)
        assert audio.dtype == np.float16
        nseg = dict(zip(ids, fs.videos("n_segments").tolist()))
        assert nseg == {"a": 3, "b": 4, "c": 2, "tiny": 1}
        dur = dict(zip(ids, fs.videos("duration").tolist()))
        assert dur["a"] == pytest.approx(3.0, abs=0.01) and dur["b"] == pytest.approx(6.3, abs=0.01)
        present = dict(zip(ids, fs.videos("audio_present").tolist()))
        assert present == {"a": True, "b": False, "c": True, "tiny": True}
        assert not audio[row["b"]].any() and audio[row["a"]].any()
        # padding repeats the last real segment; real segments differ from each other
        for v, n in nseg.items():
            for t in range(n, 4):
                assert np.array_equal(visual[row[v], t], visual[row[v], n - 1])
                assert np.array_equal(audio[row[v], t], audio[row[v], n - 1])
        assert not np.allclose(visual[row["a"], 0], visual[row["a"], 1], atol=1e-3)
        assert fs.source_index()["c"] == (os.path.getsize(data.vids / "c.mp4"),
                                          os.path.getmtime(data.vids / "c.mp4"))


def test_batched_extraction_equals_one_video_at_a_time(data):
    enc = get_encoders(data.cfg)
    vids, _ = store_by_id(data.cfg.out)
    for vid, path in (("a", "a.mp4"), ("b", "sub/b.mp4"), ("c", "c.mp4"), ("tiny", "tiny.mp4")):
        ref = extract_video_reference(stat_video(data.vids / path), data.cfg, enc)
        got = vids[vid]
        np.testing.assert_allclose(got["visual"].astype(np.float32), ref.visual, **F16)
        np.testing.assert_allclose(got["audio"].astype(np.float32), ref.audio, **F16)
        assert (got["n_segments"], got["audio_present"]) == (ref.n_segments, ref.audio_present)


def test_questions_written_for_stored_videos_only(data):
    s = data.summary
    assert (s.questions_found, s.questions_added, s.questions_without_video) == (5, 3, 2)
    enc = get_encoders(data.cfg)
    _, qs = store_by_id(data.cfg.out)
    assert sorted(qs) == [1, 2, 3]
    texts = [qs[q]["text"] for q in (1, 2, 3)]
    assert texts[1] == "Where is the violin"          # MUSIC-AVQA filling drops the '?'
    ref = enc.clip.encode_text_reference(texts)
    for q, r in zip((1, 2, 3), ref):
        np.testing.assert_allclose(qs[q]["sentence"].astype(np.float32), r, **F16)
    ids = enc.clip.tokenize(texts)
    for q, n in zip((1, 2, 3), (ids != 0).sum(1).tolist()):
        assert qs[q]["token_mask"].sum() == min(n, 8)
    with FeatureStore(data.cfg.out) as fs:
        vocab = fs.attrs["answer_vocab"]
        types = fs.attrs["type_names"]
    assert vocab[qs[1]["answer"]] == "two" and types[qs[2]["type"]] == "Visual/Location"
    assert qs[3]["video_id"] == "c" and qs[3]["split"] == "test"


def test_weight_files_give_the_features_of_the_seeded_random_weights(data, tmp_path):
    enc = get_encoders(data.cfg)
    clip_file = save_weights(enc.clip.model, tmp_path / "clip.safetensors")
    vgg_file = save_weights(enc.audio.model, tmp_path / "vggish.pt")
    sub = tmp_path / "videos"
    sub.mkdir()
    for name in ("a.mp4", "c.mp4"):
        os.link(data.vids / name, sub / name)          # same bytes, same mtime
    out = tmp_path / "w.h5"
    cfg = ExtractConfig(**dict(BASE, videos=str(sub), out=str(out), clip_weights=str(clip_file),
                               vggish_weights=str(vgg_file)))
    summary = extract(cfg, progress=False)
    assert summary.random_weights == []
    got, _ = store_by_id(out)
    base, _ = store_by_id(data.cfg.out)
    for v in ("a", "c"):
        np.testing.assert_allclose(got[v]["visual"].astype(np.float32),
                                   base[v]["visual"].astype(np.float32), **F16)
        np.testing.assert_allclose(got[v]["audio"].astype(np.float32),
                                   base[v]["audio"].astype(np.float32), **F16)
    from cli import app

    res = CliRunner().invoke(app, ["store", "info", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["encoders"]["visual"]["weights"] == f"sha256:{sha256_file(clip_file)}"
    assert info["encoders"]["audio"]["weights"] == f"sha256:{sha256_file(vgg_file)}"
    assert store_info(out)["videos"] == 2


def test_questions_only_adds_questions_without_decoding(data, tmp_path):
    out = tmp_path / "feats.h5"
    shutil.copy2(data.cfg.out, out)
    shutil.copytree(data.dir / "feats.shards", tmp_path / "feats.shards")
    before, _ = store_by_id(out)
    ann = write_music_annotations(tmp_path / "more-val.json", [
        (1, "a", '["Audio", "Counting"]', "How many instruments are sounding?", "two"),  # present
        (10, "a", '["Visual", "Counting"]', "How many violins are there?", "one"),
        (11, "tiny", '["Audio", "Comparative"]', "Is the cello louder than the piano?", "no"),
        (12, "nope", '["Audio", "Counting"]', "How many instruments are sounding?", "one"),
    ])
    cfg = ExtractConfig(**dict(BASE, out=str(out), annotations=str(ann), questions_only=True))
    s = extract(cfg, progress=False)
    assert (s.videos_extracted, s.videos_found, s.failures) == (0, 0, [])
    assert (s.questions_added, s.questions_skipped, s.questions_without_video) == (2, 1, 1)
    after, qs = store_by_id(out)
    assert sorted(qs) == [1, 2, 3, 10, 11]
    assert qs[11]["split"] == "val" and qs[11]["video_id"] == "tiny"
    for v in before:   # the videos are untouched
        assert np.array_equal(before[v]["visual"], after[v]["visual"])
    assert not verify_store(out)
    with pytest.raises(ExtractError, match="no store"):
        extract(ExtractConfig(**dict(cfg.__dict__, out=str(tmp_path / "none.h5"))), progress=False)


def test_incompatible_rerun_names_the_field(data):
    cfg = ExtractConfig(**dict(data.cfg.__dict__, T=5))
    with pytest.raises(ExtractError, match="'T' is 4 there but 5 now"):
        extract(cfg, progress=False)


@pytest.mark.parametrize("setting,value,message", [
    ("sampling", "uniform", "--sampling is 'truncate' there but 'uniform' now"),
    ("image_size", 32, "--image-size is 64 there but 32 now"),
    ("audio_reader", "decord", "--audio-reader is 'pyav' there but 'decord' now")])
def test_a_setting_that_changes_the_video_features_is_refused(data, setting, value, message):
    """Like -T or --clip-model: a store is not extended with features made another way."""
    before = sorted((p.name, p.stat().st_mtime) for p in (data.dir / "feats.shards").iterdir())
    with pytest.raises(ExtractError, match=message):
        extract(ExtractConfig(**dict(data.cfg.__dict__, **{setting: value})), progress=False)
    assert sorted((p.name, p.stat().st_mtime) for p in (data.dir / "feats.shards").iterdir()) == before


def test_the_default_precision_is_recorded_resolved_and_extending_at_another_warns(data, tmp_path,
                                                                                    caplog):
    """'auto' (the default) is recorded as the setting and what it resolved to here (bf16 on a
    CPU with native bf16); a run at the same compute precision extends the store silently, one
    at another extends it too, with a warning naming both and the --precision that matches."""
    from common.device import cpu_has_native_bf16

    vids, out = tmp_path / "v", tmp_path / "f.h5"
    vids.mkdir()
    here = "bf16" if cpu_has_native_bf16() else "fp32"
    other = "fp32" if here == "bf16" else "bf16"
    for name, precision in (("a.mp4", "auto"), ("c.mp4", here), ("tiny.mp4", other)):
        os.link(data.vids / name, vids / name)
        caplog.clear()
        s = extract(ExtractConfig(**dict(BASE, videos=str(vids), out=str(out), precision=precision)),
                    progress=False)
        assert s.videos_extracted == 1
        warned = [r.getMessage() for r in caplog.records if "precision" in r.getMessage()]
        if precision == other:
            assert len(warned) == 1 and f"made at {here} precision but this run computes at " \
                f"{other}" in warned[0] and f"pass --precision {here} to match" in warned[0], warned
        else:
            assert warned == []
        if precision == "auto":
            with FeatureStore(out) as fs:
                made = fs.attrs["extractor_config"]
            assert (made["precision"], made["compute_precision"]) == ("auto", here)
    assert store_info(out)["videos"] == 3 and not verify_store(out)


def test_a_store_made_before_audio_reader_existed_resumes_with_decord_only(tmp_path, monkeypatch):
    """Such a store records no audio_reader and was read with decord: the default reader is
    refused (naming the option that continues it), --audio-reader decord extends it."""
    import extract.pipeline as pipeline
    from cli import app

    def old_attrs(*args, **kwargs):
        attrs = real(*args, **kwargs)
        del attrs["extractor_config"]["audio_reader"]
        return attrs

    real, vids = pipeline.store_attrs, tmp_path / "v"
    make_video(vids / "a.mp4", 1.0, audio=True)
    cfg = ExtractConfig(videos=str(vids), out=str(tmp_path / "f.h5"), audio_reader="decord", **BASE)
    with monkeypatch.context() as m:
        m.setattr(pipeline, "store_attrs", old_attrs)
        assert extract(cfg, progress=False).videos_extracted == 1
    make_video(vids / "b.mp4", 1.0, audio=True, seed=1)
    args = ["extract", "--videos", str(vids), "--out", cfg.out, "-T", "4", "--clip-weights",
            "random:0", "--vggish-weights", "random:0", "--text-len", "8", "--workers", "0",
            "--device", "cpu", "--image-size", "64", "--quiet"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert "--audio-reader is 'decord' there but 'pyav' now; pass --audio-reader decord (or " \
           "--set audio_reader=decord)" in res.output
    res = CliRunner().invoke(app, args + ["--audio-reader", "decord"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert store_info(cfg.out)["videos"] == 2 and not verify_store(cfg.out)


def test_cli_exit_status_with_and_without_strict(tmp_path):
    from cli import app

    make_video(tmp_path / "v" / "ok.mp4", 1.0, audio=True)
    make_corrupt(tmp_path / "v" / "broken.mp4")
    args = ["extract", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "f.h5"), "-T", "4",
            "--clip-weights", "random:0", "--vggish-weights", "random:0", "--text-len", "8",
            "--workers", "0", "--device", "cpu", "--batch-size", "6", "--shard-size", "2", "--image-size", "64",
            "--text-batch-size", "4", "--quiet"]
    wide = {"COLUMNS": "400"}         # long tmp paths: keep rich from folding them across lines
    res = CliRunner().invoke(app, args, env=wide)
    assert res.exit_code == 0, res.output
    assert "broken.mp4" in res.output and "RANDOM WEIGHTS" in res.output
    assert "encoders ready at" in res.output and "videos done at" in res.output  # where time went
    res = CliRunner().invoke(app, args + ["--strict"], env=wide)   # resume: ok.mp4 skipped
    assert res.exit_code == 1, res.output
    assert store_info(tmp_path / "f.h5")["videos"] == 1
    make_video(tmp_path / "v" / "deep" / "ok.mkv", 1.0, audio=False)
    res = CliRunner().invoke(app, args, env=wide)
    assert res.exit_code == 2 and "duplicate video id 'ok'" in res.output


def test_config_file_then_cli_overrides(tmp_path):
    from extract.config import load_extract_config
    from common.config import ConfigError

    f = tmp_path / "extract.toml"
    f.write_text('videos = "/data/v"\nT = 8\nsampling = "uniform"\nworkers = 3\n', encoding="utf-8")
    cfg = load_extract_config(f, {"T": 10, "workers": None, "clip_weights": "random:1"})
    assert (cfg.videos, cfg.T, cfg.sampling, cfg.workers, cfg.clip_weights) == \
        ("/data/v", 10, "uniform", 3, "random:1")
    assert cfg.fps == 1.0 and cfg.clip_model == "ViT-B-32"      # defaults
    with pytest.raises(ConfigError, match="sampling"):
        load_extract_config(None, {"sampling": "random"})
    with pytest.raises(ConfigError, match="unknown field"):
        load_extract_config(None, {"segmentz": 3})
    with pytest.raises(ConfigError, match="either scheduler or dask_workers"):
        load_extract_config(None, {"scheduler": "tcp://h:1", "dask_workers": 2})


def test_nothing_to_extract_is_an_error_not_a_success(tmp_path):
    """A folder without videos or annotations exits 2 with the reason and creates no store."""
    from cli import app

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "notes.txt").write_text("no videos here")
    res = CliRunner().invoke(app, ["extract", "--videos", str(tmp_path / "v"), "--out",
                                   str(tmp_path / "f.h5"), "--clip-weights", "random",
                                   "--vggish-weights", "random", "--device", "cpu", "--quiet"],
                             env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert "nothing to extract: no videos" in res.output
    assert not (tmp_path / "f.h5").exists()


def test_failures_are_recorded_once_and_retried_only_when_the_file_changes(tmp_path):
    """Two bad files, three runs: the second neither decodes nor records them again (no new
    shard), and lists them as failed earlier; a bad file modified since is tried again."""
    vids = tmp_path / "v"
    make_video(vids / "ok.mp4", 1.0, audio=True)
    make_corrupt(vids / "bad1.mp4")
    make_corrupt(vids / "bad2.mp4")
    cfg = ExtractConfig(videos=str(vids), out=str(tmp_path / "f.h5"), **BASE)
    first = extract(cfg, progress=False)
    assert len(first.failures) == 2 and first.failed_before == []
    second = extract(cfg, progress=False)
    assert (second.failures, second.shards_written, second.videos_skipped) == ([], 0, 1)
    assert sorted(os.path.basename(p) for p, _ in second.failed_before) == ["bad1.mp4", "bad2.mp4"]
    assert all("cannot open container" in e for _, e in second.failed_before)
    assert len(store_info(tmp_path / "f.h5")["failures"]) == 2
    later = os.stat(vids / "bad1.mp4").st_mtime + 3600
    os.utime(vids / "bad1.mp4", (later, later))
    third = extract(cfg, progress=False)
    assert [os.path.basename(p) for p, _ in third.failures] == ["bad1.mp4"]
    assert [os.path.basename(p) for p, _ in third.failed_before] == ["bad2.mp4"]


def test_a_failure_row_names_its_path_once(tmp_path):
    from cli import app

    make_video(tmp_path / "v" / "ok.mp4", 1.0, audio=True)
    make_corrupt(tmp_path / "v" / "broken.mp4")
    args = ["extract", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "f.h5"), "-T", "4",
            "--clip-weights", "random:0", "--vggish-weights", "random:0", "--workers", "0",
            "--device", "cpu", "--image-size", "64", "--quiet"]
    wide = {"COLUMNS": "1000"}
    res = CliRunner().invoke(app, args, env=wide)
    assert res.exit_code == 0, res.output
    rows = [ln for ln in res.output.splitlines() if "broken.mp4" in ln]
    assert len(rows) == 1 and rows[0].count("broken.mp4") == 1, rows
    res = CliRunner().invoke(app, ["store", "info", str(tmp_path / "f.h5")], env=wide)
    rows = [ln for ln in res.output.splitlines() if "broken.mp4" in ln]
    assert len(rows) == 1 and rows[0].count("broken.mp4") == 1, rows


@pytest.mark.parametrize("case", ["split_typo", "annotations_without_videos", "questions_only_none"])
def test_nothing_to_do_is_an_error_before_the_encoders_load(data, tmp_path, case):
    """A run that could write nothing exits 2 with the reason and changes no store."""
    from cli import app

    args = ["--clip-weights", "random:0", "--vggish-weights", "random:0", "-T", "4",
            "--text-len", "8", "--image-size", "64", "--device", "cpu", "--quiet"]
    out = tmp_path / "feats.h5"
    if case == "split_typo":
        args += ["--videos", str(data.vids), "--out", str(out), "--split", "tset"]
        message = "split must be one of train, val, test"
    elif case == "annotations_without_videos":
        shutil.copytree(data.ann.parent, tmp_path / "only_qa")
        args += ["--videos", str(tmp_path / "only_qa"), "--out", str(out)]
        message = "nothing to extract: no videos"
    else:
        shutil.copy2(data.cfg.out, out)
        shutil.copytree(data.dir / "feats.shards", tmp_path / "feats.shards")
        ann = write_music_annotations(tmp_path / "other-test.json", [
            (50, "elsewhere", '["Audio", "Counting"]', "How many instruments are sounding?", "one")])
        args += ["--annotations", str(ann), "--out", str(out), "--questions-only"]
        message = "none of the 1 question(s) is about one of the 4 videos"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = CliRunner().invoke(app, ["extract"] + args, env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output, res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
