"""dask: extraction on a LocalCluster with 2 workers gives the store of the in-process run."""
from __future__ import annotations

import pytest
import torch

from extract.config import ExtractConfig
from extract.pipeline import extract
from store import verify_store
from videos import (RESUME_OPTS, assert_same_store, extract_command, make_corrupt, make_video,
                    write_music_annotations)

torch.set_num_threads(2)
OPTS = dict(T=4, clip_weights="random:0", vggish_weights="random:0", text_len=8, batch_size=4,
            image_size=64, shard_size=2, question_shard_size=2, workers=1, device="cpu",
            text_batch_size=4)


@pytest.mark.timeout(300)
def test_local_cluster_gives_the_in_process_store(tmp_path):
    from dask.distributed import LocalCluster

    vids = tmp_path / "videos"
    for i in range(5):
        make_video(vids / f"d{i}.mp4", 1.0 + 0.6 * i, audio=i != 2, size=(64, 48), seed=10 + i)
    make_corrupt(vids / "zz_broken.mp4")
    ann = write_music_annotations(tmp_path / "qa-train.json", [
        (200 + i, f"d{i}", '["Visual", "Counting"]', "How many violins are there?", "two")
        for i in range(5)] + [(300, "gone", '["Visual", "Counting"]', "How many?", "two")])

    local = tmp_path / "local.h5"
    s_local = extract(ExtractConfig(videos=str(vids), annotations=str(ann), out=str(local),
                                    **dict(OPTS, workers=0)), progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        dist = tmp_path / "dask.h5"
        s_dask = extract(ExtractConfig(videos=str(vids), annotations=str(ann), out=str(dist),
                                       scheduler=cluster.scheduler_address, **OPTS), progress=False)
    assert s_dask.runner.startswith("dask") and "2 workers" in s_dask.runner
    for s in (s_local, s_dask):
        assert (s.videos_extracted, s.questions_added, s.questions_without_video) == (5, 5, 1)
        assert [p for p, _ in s.failures] == [str(vids / "zz_broken.mp4")]
    assert s_dask.shards_written == 3 + 3           # 6 inputs / 2 per task, 5 questions / 2
    assert_same_store(dist, local, atol=2e-3)
    assert not verify_store(dist)


@pytest.mark.timeout(600)
def test_killed_dask_workers_lose_and_duplicate_nothing(resume_videos, resume_reference, tmp_path):
    """``--dask-workers 2``, the worker processes SIGKILLed once a shard exists (the worker
    that wrote it may not have reported it yet): the run completes, or stops saying to run it
    again and the rerun completes; the store verifies and equals the in-process store."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    from store.layout import complete_shards

    repo = Path(__file__).resolve().parents[1]
    # the in-process store of the same settings (shard size 1, no decode workers): conftest.py
    vids, local = resume_videos, resume_reference
    out = tmp_path / "dask.h5"
    cmd = [sys.executable, str(repo / "cli.py")] \
        + extract_command(vids, out, dict(RESUME_OPTS, workers=1, dask_workers=2)) + ["--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo), "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 300          # guards against a hung child only
    while not complete_shards(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if "spawn_main" in " ".join(c.cmdline())]
    assert proc.poll() is None and workers, "no dask worker to kill"
    for w in workers:
        os.kill(w.pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert "Traceback" not in output, output[-3000:]
    if proc.returncode != 0:
        assert proc.returncode == 2 and "run the same command again" in output, output[-3000:]
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout[-3000:]
    assert not verify_store(out)
    assert_same_store(out, local, atol=2e-3)
