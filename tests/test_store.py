"""Feature store: write shards, index them, read them back (fast reader vs raw arrays and vs the
row-by-row reference), drop videos, attribute checks, `store info` / `--help`."""
from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
from store_helpers import concat, make_attrs, question_batch, video_batch, write_shard
from typer.testing import CliRunner

from store import (FeatureStore, ShardWriter, StoreError, drop_videos, rebuild_index, store_info,
                   verify_store)
from store.checksums import BlockCrc, block_crcs
from store.schema import CHECK_BLOCK, QUESTION_FIELDS, VIDEO_FIELDS, field_required

VIDEO_KEYS = {"id": "ids", "audio": "audio", "audio_present": "audio_present", "visual": "visual",
              "visual_patches": "visual_patches", "n_segments": "n_segments", "duration": "duration",
              "source_path": "source_path", "source_size": "source_size", "source_mtime": "source_mtime"}
QUESTION_KEYS = {"id": "ids", "video_id": "video_ids", "split": "splits", "type": "types",
                 "answer": "answers", "answer_text": "answer_texts", "text": "texts", "sentence": "sentence",
                 "tokens": "tokens", "token_mask": "token_mask", "options_text": "options_text",
                 "options": "options"}


def build_store(tmp_path, attrs, seed=0):
    """Four shards: videos+questions (crossing a checksum block), video-only, question-only,
    and a mixed one written in two add_videos calls.  Returns entry, raw videos, raw questions."""
    rng = np.random.default_rng(seed)
    entry = tmp_path / "feats.h5"
    ids = [[f"a{i:03d}" for i in range(70)], [f"b{i}" for i in range(5)], [], [f"d{i}" for i in range(9)]]
    vb = [video_batch(rng, ids[0], attrs), video_batch(rng, ids[1], attrs),
          video_batch(rng, ids[3][:4], attrs), video_batch(rng, ids[3][4:], attrs)]
    all_ids = [v for part in ids for v in part]
    q_vids = [all_ids[int(i)] for i in rng.integers(0, len(all_ids), 40)]
    qb = [question_batch(rng, list(range(100, 112)), q_vids[:12], attrs),
          question_batch(rng, list(range(200, 220)), q_vids[12:32], attrs),
          question_batch(rng, list(range(300, 308)), q_vids[32:], attrs)]
    write_shard(entry, attrs, videos=[vb[0]], questions=[qb[0]], failures=[("/x/broken.mp4", "no video stream")])
    write_shard(entry, attrs, videos=[vb[1]])
    write_shard(entry, attrs, questions=[qb[1]])
    write_shard(entry, attrs, videos=[vb[2], vb[3]], questions=[qb[2]])
    summary = rebuild_index(entry)
    assert summary["shards"] == 4 and summary["videos"] == 84 and summary["questions"] == 40
    assert summary["questions_without_video"] == 0
    return entry, concat(vb), concat(qb)


def selections(n):
    return [None, slice(None), slice(3, n - 2), slice(n - 1, 2, -3), slice(5, 5),
            np.array([n - 1, 0, 3, 3, n // 2, 1, n - 1]), np.arange(n)[::-1], [-1, 2],
            np.zeros(0, dtype=np.int64), np.arange(n) % 3 == 0, np.array([[1, 2], [0, n - 1]])]


def expected(raw, sel):
    return raw if sel is None else raw[sel if not isinstance(sel, list) else np.asarray(sel)]


@pytest.mark.parametrize("patches,n_options,gap_bytes", [(0, 0, 1 << 18), (2, 3, 1 << 18), (2, 3, 0)])
def test_round_trip_matches_raw_arrays_and_reference(tmp_path, patches, n_options, gap_bytes):
    """gap_bytes=0 reads every run of adjacent rows as its own slice; the default merges them."""
    attrs = make_attrs(patches=patches, n_options=n_options)
    entry, V, Q = build_store(tmp_path, attrs)
    with FeatureStore(entry, gap_bytes=gap_bytes) as fs:
        assert fs.n_videos == 84 and fs.n_questions == 40
        assert fs.video_ids.tolist() == V["ids"].tolist()
        assert fs.question_ids.dtype == np.int64 and fs.question_ids.tolist() == Q["ids"].tolist()
        row_of = {v: i for i, v in enumerate(V["ids"].tolist())}
        assert fs.question_video_row.tolist() == [row_of[v] for v in Q["video_ids"].tolist()]
        for group, keys, raw, fields in (("videos", VIDEO_KEYS, V, VIDEO_FIELDS),
                                         ("questions", QUESTION_KEYS, Q, QUESTION_FIELDS)):
            read = fs.videos if group == "videos" else fs.questions
            n = fs.n_videos if group == "videos" else fs.n_questions
            for f in fields:
                assert fs.has_field(group, f.name) == field_required(f, attrs)
                if not field_required(f, attrs):
                    with pytest.raises(StoreError, match=f"{group}/{f.name}"):
                        read(f.name)
                    continue
                for sel in selections(n):
                    got = read(f.name, sel)
                    want = expected(raw[keys[f.name]], sel)
                    assert got.shape == want.shape, (f.path, sel)
                    assert np.array_equal(got, want), (f.path, sel)
                    if f.dtype != "str":
                        assert got.dtype == np.dtype(f.dtype)
                    if sel is not None and not (isinstance(sel, np.ndarray) and sel.ndim > 1):
                        assert np.array_equal(fs.read_rows_slow(group, f.name, sel), want), (f.path, sel)
        # a scalar row gives one row without the leading axis
        assert np.array_equal(fs.videos("visual", 71), V["visual"][71])
        assert fs.videos("id", 80) == V["ids"][80]
        assert fs.has_field("videos", "nonexistent") is False


def test_store_level_queries(tmp_path):
    entry, V, Q = build_store(tmp_path, make_attrs())
    with FeatureStore(entry) as fs:
        for split in ("train", "val", "test", "nosuch"):
            assert fs.split_rows(split).tolist() == np.flatnonzero(Q["splits"] == split).tolist()
        assert fs.failures == [{"path": "/x/broken.mp4", "error": "no video stream"}]
        src = fs.source_index()
        assert src["b3"] == (int(V["source_size"][73]), float(V["source_mtime"][73]))
        ident = fs.identity()
        assert ident["videos"] == 84 and ident["questions"] == 40 and ident["schema_version"] == 1
        assert len(ident["fingerprint"]) == 64
        assert fs.attrs["answer_vocab"] == make_attrs()["answer_vocab"]
        assert fs.attrs["encoders"]["audio"]["weights"] == "random:0"
        fs.check_attrs({"T": 4, "visual_dim": 6, "type_names": make_attrs()["type_names"]})
        with pytest.raises(StoreError, match="store attribute 'visual_dim' is 6 but train config expects 512"):
            fs.check_attrs({"T": 4, "visual_dim": 512}, where="train config")
        clone = pickle.loads(pickle.dumps(fs))
        assert np.array_equal(clone.videos("audio", [83, 0]), V["audio"][[83, 0]])
        clone.close()
        with pytest.raises(IndexError, match="out of range"):
            fs.videos("audio", [84])
        with pytest.raises(IndexError, match="boolean mask"):
            fs.videos("audio", np.ones(3, bool))
    # rebuilding the index reproduces the same fingerprint (sha256 reused or recomputed alike)
    assert rebuild_index(entry)["fingerprint"] == ident["fingerprint"]


def test_checksum_incremental_matches_whole_array_reference():
    rng = np.random.default_rng(1)
    arr = rng.standard_normal((3 * CHECK_BLOCK + 5, 3, 2)).astype(np.float16)
    strs = np.asarray([f"s{i}é" * (i % 4) for i in range(2 * CHECK_BLOCK + 1)], dtype=object)
    for a in (arr, strs, arr[:, 0, 0] > 0):
        crc = BlockCrc()
        for lo, hi in ((0, 1), (1, 70), (70, 71), (71, 200), (200, len(a))):
            crc.update(a[lo:hi])
        assert np.array_equal(crc.finish(), block_crcs(a))
        assert len(block_crcs(a)) == -(-len(a) // CHECK_BLOCK)


def test_writer_refuses_bad_input(tmp_path):
    attrs = make_attrs()
    rng = np.random.default_rng(2)
    entry = tmp_path / "feats.h5"
    write_shard(entry, attrs, videos=[video_batch(rng, ["v0", "v1"], attrs)])
    rebuild_index(entry)
    with ShardWriter(entry, attrs) as w:
        with pytest.raises(StoreError, match="'v1' is already in the store"):
            w.add_videos(**video_batch(rng, ["v2", "v1"], attrs))
        with pytest.raises(StoreError, match="'v3' is already in this shard"):
            w.add_videos(**video_batch(rng, ["v3", "v3"], attrs))
        w.add_videos(**video_batch(rng, ["v3"], attrs))
        with pytest.raises(StoreError, match="'v3' is already in this shard"):
            w.add_videos(**video_batch(rng, ["v3"], attrs))
        bad = video_batch(rng, ["v4"], attrs)
        bad["visual"] = bad["visual"][:, :, :-1]
        with pytest.raises(StoreError, match=r"visual has shape \(1, 4, 5\), expected \(1, 4, 6\)"):
            w.add_videos(**bad)
        with pytest.raises(StoreError, match="invalid video id"):
            w.add_videos(**video_batch(rng, ["../evil"], attrs))
        bad = video_batch(rng, ["v5"], attrs)
        bad["n_segments"] = np.array([9], np.int32)
        with pytest.raises(StoreError, match="n_segments must be in 1..T=4"):
            w.add_videos(**bad)
        with pytest.raises(StoreError, match="visual_patches given but the store has patches=0"):
            w.add_videos(**video_batch(rng, ["v6"], make_attrs(patches=1)))
        q = question_batch(rng, [1, 1], ["v0", "v0"], attrs)
        with pytest.raises(StoreError, match="question id 1 is already in this shard"):
            w.add_questions(**q)
        q = question_batch(rng, [2], ["v0"], attrs)
        q["answers"] = np.array([4], np.int16)
        with pytest.raises(StoreError, match=r"answer must be in -1..3"):
            w.add_questions(**q)
        w.add_questions(**question_batch(rng, [3], ["v0"], attrs))
    # rejected calls wrote nothing: the shard holds exactly the accepted rows
    rebuild_index(entry)
    with FeatureStore(entry) as fs:
        assert fs.video_ids.tolist() == ["v0", "v1", "v3"] and fs.question_ids.tolist() == [3]
    assert verify_store(entry) == []
    with pytest.raises(StoreError, match="missing attribute"):
        ShardWriter(entry, {k: v for k, v in attrs.items() if k != "T"})
    with pytest.raises(StoreError, match="attribute 'T' is 5"):
        ShardWriter(entry, make_attrs(T=5))


def test_drop_videos_rewrites_shards(tmp_path):
    entry, V, Q = build_store(tmp_path, make_attrs())
    shards = sorted(p.name for p in (tmp_path / "feats.shards").iterdir())
    dropped = ["a005", "a069", "b0", "b1", "b2", "b3", "b4", "nosuch"]
    assert drop_videos(entry, dropped) == 7
    # the video-only shard lost every row and is gone; the others were replaced in place
    assert sorted(p.name for p in (tmp_path / "feats.shards").iterdir()) == [s for s in shards if s != "part-00001.h5"]
    # until they are re-extracted, questions about dropped videos are the only problems
    problems = verify_store(entry)
    orphaned = sorted(set(Q["video_ids"].tolist()) & set(dropped))
    assert orphaned and len(problems) == len(orphaned)
    assert all(any(f"video {v!r} is not in the store" in p for p in problems) for v in orphaned)
    keep = ~np.isin(V["ids"], dropped)
    with FeatureStore(entry) as fs:
        assert fs.video_ids.tolist() == V["ids"][keep].tolist()
        for name, key in VIDEO_KEYS.items():
            if name != "visual_patches":
                assert np.array_equal(fs.videos(name), V[key][keep]), name
        assert fs.question_ids.tolist() == Q["ids"].tolist()   # questions are kept
    # the dropped videos can be written again (re-extraction)
    rng = np.random.default_rng(5)
    write_shard(entry, make_attrs(), videos=[video_batch(rng, dropped[:-1], make_attrs())])
    assert rebuild_index(entry)["videos"] == 84
    assert verify_store(entry) == []
    assert drop_videos(entry, []) == 0


def test_store_info_json_and_table(tmp_path):
    from cli import app

    entry, V, Q = build_store(tmp_path, make_attrs())
    result = CliRunner().invoke(app, ["store", "info", str(entry), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    for key in ("schema_version", "videos", "questions", "segments", "fps", "audio_dim", "visual_dim",
                "text_dim", "text_len", "shards", "videos_without_audio", "questions_per_split", "encoders",
                "dataset", "failures", "fingerprint"):
        assert key in info, key
    assert info["videos"] == 84 and info["questions"] == 40 and info["shards"] == 4
    assert info["segments"] == 4 and info["audio_dim"] == 8 and info["visual_dim"] == 6
    assert info["videos_without_audio"] == int((~V["audio_present"]).sum())
    splits, counts = np.unique(Q["splits"], return_counts=True)
    assert info["questions_per_split"] == dict(zip(splits.tolist(), counts.tolist()))
    assert info["failures"] == [{"path": "/x/broken.mp4", "error": "no video stream"}]
    assert info["encoders"]["visual"]["name"] == "clip-vit-b32"
    assert info == store_info(entry)
    with FeatureStore(entry) as fs:
        assert info["fingerprint"] == fs.identity()["fingerprint"]
    table = CliRunner().invoke(app, ["store", "info", str(entry)])
    assert table.exit_code == 0 and "videos_without_audio" in table.output and "84" in table.output
    missing = CliRunner().invoke(app, ["store", "info", str(tmp_path / "none.h5")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_store_commands_have_help():
    import typer.main
    from cli import app

    group = typer.main.get_command(app).commands["store"]
    for name in ("info", "verify"):
        cmd = group.commands[name]
        assert cmd.help
        for p in cmd.params:
            assert p.help, f"store {name}: {p.name} has no help"
        out = CliRunner().invoke(app, ["store", name, "--help"])
        assert out.exit_code == 0 and "entry file" in out.output
    assert "--quick" in CliRunner().invoke(app, ["store", "verify", "--help"]).output
    assert "--json" in CliRunner().invoke(app, ["store", "info", "--help"]).output


def test_reader_refuses_non_stores(tmp_path):
    entry, _, _ = build_store(tmp_path, make_attrs())
    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(tmp_path / "nope.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a feature store entry file"):
        FeatureStore(other)
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(StoreError, match="cannot be read as HDF5"):
        FeatureStore(tmp_path / "text.h5")
    with h5py.File(entry, "a") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(StoreError, match="schema_version 2"):
        FeatureStore(entry)
    rebuild_index(entry)
    (tmp_path / "feats.shards" / "part-00002.h5").unlink()
    with pytest.raises(StoreError, match="part-00002.h5 listed in the index is missing"):
        FeatureStore(entry)
