"""Resume: a `python cli.py extract` killed with SIGKILL after its first shard, then re-run, gives
the store of an uninterrupted run; changed inputs are re-extracted; the store lock holds."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from extract.config import ExtractConfig
from extract.pipeline import extract
from store import StoreError, StoreLock, verify_store
from store.layout import complete_shards
from videos import RESUME_OPTS as OPTS, RESUME_VIDEOS as N_VIDEOS
from videos import assert_same_store, extract_command, make_video, store_by_id

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]


def cli_args(videos: Path, out: Path) -> list[str]:
    return extract_command(videos, out, OPTS) + ["--quiet"]


@pytest.mark.timeout(300)
def test_killed_run_resumes_to_the_uninterrupted_store(resume_videos, resume_reference, tmp_path):
    videos, reference = resume_videos, resume_reference     # conftest.py: shared, read only
    out = tmp_path / "feats.h5"
    first = tmp_path / "feats.shards" / "part-00000.h5"
    proc = subprocess.Popen([sys.executable, "cli.py"] + cli_args(videos, out), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        _, err = proc.communicate()
    assert first.exists(), err.decode(errors="replace")[-2000:]
    assert proc.returncode == -signal.SIGKILL
    done = len(complete_shards(out))
    assert 1 <= done < N_VIDEOS, f"the kill came too late to test anything ({done} shards)"

    # wide lines: at 80 columns a long temp path wraps the file name the test looks for
    again = subprocess.run([sys.executable, "cli.py"] + cli_args(videos, out) + ["--strict"],
                           cwd=REPO, capture_output=True, text=True, timeout=240,
                           env={**os.environ, "COLUMNS": "1000"})
    assert again.returncode == 1, again.stdout + again.stderr     # --strict: broken.mp4 failed
    assert "broken.mp4" in again.stdout
    assert_same_store(out, reference, atol=2e-3)
    assert not verify_store(out)
    from cli import app

    res = CliRunner().invoke(app, ["store", "verify", str(out)])
    assert res.exit_code == 0 and res.output.startswith("OK"), res.output
    assert not list((tmp_path / "feats.shards").glob(".*.tmp"))   # the crashed temp file is gone


def test_changed_input_is_reextracted(resume_videos, resume_reference, tmp_path):
    videos, reference = resume_videos, resume_reference
    vids = tmp_path / "videos"
    shutil.copytree(videos, vids, copy_function=os.link)     # same files, same mtimes
    out = tmp_path / "feats.h5"
    shutil.copy2(reference, out)
    shutil.copytree(reference.parent / "feats.shards", tmp_path / "feats.shards")
    before, _ = store_by_id(out)
    (vids / "v0.mp4").unlink()
    make_video(vids / "v0.mp4", 3.0, audio=True, seed=42)      # new content, new size and mtime
    s = extract(ExtractConfig(videos=str(vids), out=str(out), **OPTS), progress=False)
    assert (s.videos_changed, s.videos_extracted, s.videos_skipped) == (1, 1, N_VIDEOS - 1)
    assert (s.questions_added, s.questions_skipped) == (0, N_VIDEOS)
    after, qs = store_by_id(out)
    assert sorted(after) == sorted(before)
    assert before["v0"]["n_segments"] == 1 and after["v0"]["n_segments"] == 3
    assert not np.allclose(after["v0"]["visual"].astype(np.float32),
                           before["v0"]["visual"].astype(np.float32), atol=1e-2)
    for v in ("v1", "v2"):
        assert np.array_equal(after[v]["visual"], before[v]["visual"])
    assert qs[100]["video_id"] == "v0"
    assert not verify_store(out)


def test_a_second_extractor_is_refused_by_the_lock(resume_videos, tmp_path):
    out = tmp_path / "feats.h5"
    with StoreLock(out):
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
            extract(ExtractConfig(videos=str(resume_videos), out=str(out), **OPTS), progress=False)
