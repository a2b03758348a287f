"""Store integrity: temp files, truncated shards, flipped bytes, duplicate ids, dangling
questions, incompatible shards, locking, failing writers, concurrent writers."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from store_helpers import make_attrs, question_batch, video_batch, write_shard, write_videos_process
from typer.testing import CliRunner

from store import FeatureStore, ShardWriter, StoreError, StoreLock, rebuild_index, verify_store
from store.schema import CHECK_BLOCK
from store.writer import claim_shard_number


@pytest.fixture
def store(tmp_path):
    """Two shards (130 + 6 videos, 10 questions), indexed."""
    attrs = make_attrs()
    rng = np.random.default_rng(0)
    entry = tmp_path / "feats.h5"
    v0 = video_batch(rng, [f"v{i:03d}" for i in range(130)], attrs)
    v1 = video_batch(rng, [f"w{i}" for i in range(6)], attrs)
    write_shard(entry, attrs, videos=[v0], questions=[question_batch(rng, list(range(10)), ["v000"] * 5 + ["w5"] * 5, attrs)])
    write_shard(entry, attrs, videos=[v1])
    rebuild_index(entry)
    assert verify_store(entry) == [] and verify_store(entry, quick=True) == []
    return entry, attrs, v0, v1


def test_temp_shard_is_ignored_and_noted(store):
    entry, attrs, v0, v1 = store
    rng = np.random.default_rng(1)
    w = ShardWriter(entry, attrs)
    w.add_videos(**video_batch(rng, ["ghost"], attrs))
    w._h5.flush()
    assert w.tmp_path.name == ".part-00002.h5.tmp" and w.tmp_path.exists()
    assert rebuild_index(entry)["videos"] == 136          # the temp file is not read
    result = verify_store(entry)
    assert result == [] and any(".part-00002.h5.tmp" in n for n in result.notes)
    with FeatureStore(entry) as fs:
        assert "ghost" not in fs.video_ids.tolist()
    w.abort()
    assert not w.tmp_path.exists() and verify_store(entry).notes == []


def test_truncated_shard_is_named(store):
    entry, *_ = store
    shard = entry.parent / "feats.shards" / "part-00000.h5"
    size = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(size // 2)
    for quick in (True, False):
        problems = verify_store(entry, quick=quick)
        assert any("part-00000.h5" in p and "truncated" in p for p in problems), problems
        assert any("part-00000.h5" in p and "size" in p for p in problems), problems
    with pytest.raises(StoreError, match="part-00000.h5 changed size"):
        FeatureStore(entry)
    with pytest.raises(StoreError, match="part-00000.h5"):
        rebuild_index(entry)
    from cli import app

    out = CliRunner().invoke(app, ["store", "verify", str(entry)])
    assert out.exit_code == 1 and "part-00000.h5" in out.output


def _flip_byte(path, dataset, row):
    """Flip one byte of ``row`` of a chunked, unfiltered dataset in the file itself."""
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        c = ds.chunks[0]
        info = ds.id.get_chunk_info_by_coord((row // c * c,) + (0,) * (ds.ndim - 1))
        row_bytes = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
        offset = info.byte_offset + (row % c) * row_bytes + 3
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_flipped_bytes_are_found_with_rows(store):
    entry, attrs, v0, v1 = store
    shard = entry.parent / "feats.shards" / "part-00000.h5"
    _flip_byte(shard, "videos/visual", 100)
    assert verify_store(entry, quick=True) == []          # same size: quick mode cannot see it
    problems = verify_store(entry)
    lo = 100 // CHECK_BLOCK * CHECK_BLOCK
    assert any(f"shard part-00000.h5: videos/visual rows {lo}-{lo + CHECK_BLOCK - 1}: checksum mismatch" in p
               for p in problems), problems
    assert any("part-00000.h5: sha256" in p for p in problems), problems
    assert not any("videos/audio " in p for p in problems)
    with FeatureStore(entry) as fs:   # the damage is real: the row read back differs from what was written
        assert not np.array_equal(fs.videos("visual", 100), v0["visual"][100])
        assert np.array_equal(fs.videos("visual", 99), v0["visual"][99])


def test_duplicate_video_id_across_shards_refused_at_index_time(store):
    entry, attrs, *_ = store
    entry.unlink()   # two writers before any index: neither can see the other's ids
    rng = np.random.default_rng(2)
    write_shard(entry, attrs, videos=[video_batch(rng, ["x1", "v007"], attrs)])
    with pytest.raises(StoreError, match=r"duplicate video id 'v007': in shard part-00000.h5 and shard part-00002.h5"):
        rebuild_index(entry)
    problems = verify_store(entry)
    assert any("duplicate video id 'v007'" in p for p in problems)


def test_duplicate_question_id_across_shards_refused(store):
    entry, attrs, *_ = store
    entry.unlink()
    rng = np.random.default_rng(3)
    write_shard(entry, attrs, questions=[question_batch(rng, [3], ["w0"], attrs)])
    with pytest.raises(StoreError, match="duplicate question id 3: in shard part-00000.h5 and shard part-00002.h5"):
        rebuild_index(entry)


def test_question_about_missing_video_is_reported(store):
    entry, attrs, *_ = store
    rng = np.random.default_rng(4)
    write_shard(entry, attrs, questions=[question_batch(rng, [50, 51], ["nosuchvideo", "w1"], attrs)])
    summary = rebuild_index(entry)
    assert summary["questions_without_video"] == 1
    with FeatureStore(entry) as fs:
        assert fs.question_video_row[-2:].tolist() == [-1, 131]
    problems = verify_store(entry)
    assert len(problems) == 1 and "'nosuchvideo'" in problems[0] and "50 (shard part-00002.h5)" in problems[0]


def test_incompatible_shard_refused_naming_shard_and_attribute(store):
    entry, attrs, *_ = store
    entry.unlink()
    other = make_attrs(visual_dim=7)
    write_shard(entry, other, videos=[video_batch(np.random.default_rng(5), ["z"], other)])
    with pytest.raises(StoreError, match=r"shard part-00002.h5: attribute 'visual_dim' is 7 but shard part-00000.h5 has 6"):
        rebuild_index(entry)


def test_index_out_of_date_is_reported(store):
    entry, attrs, *_ = store
    write_shard(entry, attrs, videos=[video_batch(np.random.default_rng(6), ["late"], attrs)])
    problems = verify_store(entry, quick=True)
    assert any("part-00002.h5 is complete but not in the index" in p for p in problems)
    rebuild_index(entry)
    assert verify_store(entry) == []


class FailingWriter(ShardWriter):
    """A writer whose underlying dataset write fails midway through a batch (disk full, say)."""

    fail_on = "videos/visual"

    def _append(self, path, arr):
        if path == self.fail_on and self.n_videos > 0:
            raise OSError(28, "No space left on device (simulated)")
        super()._append(path, arr)


def test_failing_writer_leaves_only_a_temp_file(store):
    entry, attrs, v0, v1 = store
    rng = np.random.default_rng(7)
    before = sorted(p.name for p in (entry.parent / "feats.shards").iterdir())
    with pytest.raises(OSError, match="No space left"):
        with FailingWriter(entry, attrs) as w:
            w.add_videos(**video_batch(rng, ["n1", "n2"], attrs))
            w.add_videos(**video_batch(rng, ["n3"], attrs))     # fails after writing audio rows
    with pytest.raises(StoreError, match="failed"):
        w.add_failure("x", "y")
    after = sorted(p.name for p in (entry.parent / "feats.shards").iterdir())
    assert after == sorted(before + [".part-00002.h5.tmp"])
    assert not w.path.exists()
    rebuild_index(entry)
    result = verify_store(entry)
    assert result == [] and len(result.notes) == 1
    with FeatureStore(entry) as fs:
        assert fs.n_videos == 136 and np.array_equal(fs.videos("audio", slice(130, None)), v1["audio"])
    # a bad-shaped array midway is refused before anything is written; the writer stays usable
    with ShardWriter(entry, attrs) as w2:
        w2.add_videos(**video_batch(rng, ["m1"], attrs))
        bad = video_batch(rng, ["m2"], attrs)
        bad["audio"] = bad["audio"][:, :2]
        with pytest.raises(StoreError, match="audio has shape"):
            w2.add_videos(**bad)
    assert w2.path.name == "part-00003.h5"
    assert rebuild_index(entry)["videos"] == 137 and verify_store(entry) == []


def test_claim_skips_taken_numbers(tmp_path):
    d = tmp_path / "feats.shards"
    d.mkdir()
    (d / ".part-00000.h5.tmp").touch()
    (d / "part-00001.h5").touch()
    number, tmp = claim_shard_number(d)
    assert number == 2 and tmp.name == ".part-00002.h5.tmp" and tmp.exists()
    assert claim_shard_number(d)[0] == 3


def test_concurrent_writers_get_distinct_shards(tmp_path):
    entry = tmp_path / "feats.h5"
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(3)
        with ctx.Pool(3) as pool:
            names = pool.starmap(write_videos_process,
                                 [(str(entry), f"p{k}_", 4, k, barrier) for k in range(3)])
    assert sorted(names) == ["part-00000.h5", "part-00001.h5", "part-00002.h5"]
    assert rebuild_index(entry)["videos"] == 12 and verify_store(entry) == []


def test_lock_refuses_second_holder_with_pid(tmp_path):
    entry = tmp_path / "feats.h5"
    with StoreLock(entry) as lock:
        assert lock.held and lock.path.name == "feats.h5.lock"
        with pytest.raises(StoreError, match=f"locked by pid {os.getpid()} on host"):
            StoreLock(entry).acquire()
    assert not lock.held
    with StoreLock(entry) as again:           # released: free to take
        assert again.took_over is None


def test_stale_lock_of_killed_process_is_taken_over(tmp_path):
    entry = tmp_path / "feats.h5"
    code = textwrap.dedent(f"""
        import sys, time
        from store import StoreLock
        lock = StoreLock({str(entry)!r}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=f"locked by pid {child.pid} on host"):
            StoreLock(entry).acquire()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert (tmp_path / "feats.h5.lock").exists()       # left behind by the killed holder
    with StoreLock(entry) as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == child.pid


def test_store_reindex_command_rebuilds_the_entry_file(store, tmp_path):
    """An index out of date (a late shard) or missing is rebuilt by the command the messages
    name; a shard folder given as the store is named as such, not an h5py errno."""
    from cli import app

    entry, attrs, *_ = store
    write_shard(entry, attrs, videos=[video_batch(np.random.default_rng(6), ["late"], attrs)])
    problems = verify_store(entry, quick=True)
    assert any("python cli.py store reindex PATH rebuilds it" in p for p in problems), problems
    res = CliRunner().invoke(app, ["store", "info", str(entry)], env={"COLUMNS": "400"})
    assert "not in the index yet: 1 complete shard(s) with 1 videos" in res.output, res.output
    entry.unlink()
    res = CliRunner().invoke(app, ["store", "reindex", str(entry)], env={"COLUMNS": "400"})
    assert res.exit_code == 0 and "indexed 3 shards, 137 videos" in res.output, res.output
    assert verify_store(entry) == []
    res = CliRunner().invoke(app, ["store", "info", str(tmp_path / "feats.shards")],
                             env={"COLUMNS": "400"})
    assert res.exit_code == 2 and "is a folder, not a file" in res.output, res.output
    assert str(entry) in res.output and "Errno" not in res.output
