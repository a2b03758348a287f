"""Progress of an extraction whose output goes to a file (``extract ... > log 2>&1``): log lines
appear while it runs, and the run's first shard is small, so ``store info`` shows the videos
done so far before the index exists."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store.layout import complete_shards
from videos import make_resume_folder

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
N_VIDEOS = 20


@pytest.mark.timeout(600)
def test_output_to_a_file_shows_progress_lines_and_store_info_counts_the_first_shard(tmp_path):
    videos = make_resume_folder(tmp_path / "videos", N_VIDEOS)
    out, log = tmp_path / "feats.h5", tmp_path / "extract.log"
    cmd = [sys.executable, str(REPO / "cli.py"), "extract", "--videos", str(videos), "--out",
           str(out), "-T", "4", "--clip-weights", "random:0", "--vggish-weights", "random:0",
           "--text-len", "8", "--batch-size", "4", "--image-size", "64", "--workers", "1",
           "--device", "cpu"]          # default --shard-size (64): the first shard holds 8
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=ENV, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300        # guards against a hung child only
        while not complete_shards(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGSTOP)        # hold it mid-run while we look
        assert proc.poll() is None, "the extraction ended before its first shard was seen"
        text = log.read_text()
        assert "store now holds" not in text                      # not finished
        lines = [ln for ln in text.splitlines() if ln.startswith("extracting: ")]
        assert lines and f"/{N_VIDEOS + 1} videos" in lines[-1], text
        info = subprocess.run([sys.executable, str(REPO / "cli.py"), "store", "info", str(out),
                               "--json"], env=ENV, capture_output=True, text=True, timeout=120)
        assert info.returncode == 0, info.stderr
        pending = json.loads(info.stdout)["not_yet_indexed"]
        assert pending["shards"] >= 1 and pending["videos"] >= 8, pending
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=300)
    assert proc.returncode == 0, log.read_text()[-3000:]
    text = log.read_text()
    done = [ln for ln in text.splitlines() if ln.startswith("extracting: ")]
    assert len(done) >= 5 and f"{N_VIDEOS + 1}/{N_VIDEOS + 1} videos" in done[-1], text
    assert "\x1b[" not in text                    # no terminal escapes in a file


def test_eta_is_the_mean_rate_since_the_first_video(monkeypatch):
    """The ETA shown early on: from the mean rate since the first video (rich's recent-window
    estimate swung by the burst of videos decoded while the encoders loaded).  The clock is
    stepped by hand; the lines go to a file-like console, as under ``> log``."""
    import io

    from rich.console import Console

    import extract.pipeline as pipeline

    now = [100.0]
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = pipeline._Progress(True, Console(file=out, width=200))
    bar.start(20)
    for _ in range(11):          # a burst: 11 videos at once (decoded while the encoders loaded)
        bar.advance()
    for _ in range(5):           # then one every 2 s
        now[0] += 2.0
        bar.advance()
    bar.stop()
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("extracting: 16/20")]
    assert lines, out.getvalue()
    # 15 videos in 10 s since the first: 1.50 videos/s, 4 left -> 2.7 s
    assert "1.50 videos/s" in lines[-1] and "ETA 0:00:03" in lines[-1], lines[-1]
