"""Kill-and-resume soak (small size, run in CI): ``python cli.py extract`` and ``python cli.py
train`` are SIGKILLed five times each at seeded random points of their work and resumed; the
final store / metrics and weights equal those of an uninterrupted run.  Along the way: a second
extractor is refused by the store lock and names the holder's pid, and the lock left behind by
the killed holder is taken over."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from store import FeatureStore, verify_store
from store.layout import complete_shards
from storegen import make_store
from train import find_checkpoint, load_train_config, read_metrics, train
from test_train_resume import run_model_with_torchscript_optimisation
from videos import RESUME_OPTS as EXTRACT, RESUME_VIDEOS as N_VIDEOS, assert_same_store, extract_command

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]
KILLS = 5
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000", "PYTHONPATH": str(REPO)}
POLL = 0.005      # seconds between looks at the files a child writes


def wait_for(proc: subprocess.Popen, condition, limit: float = 240.0) -> bool:
    """Poll ``condition()`` until it holds (True) or ``proc`` exits (False).  ``limit`` only
    guards against a hung child; the test never depends on how long anything takes."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return bool(condition())
        time.sleep(POLL)
    raise AssertionError(f"child {proc.pid} neither reached the kill point nor exited")


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL ``proc`` unless it already exited; True when the kill landed."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


# ---- extraction (the folder and its uninterrupted store: conftest.py) -----------------------


def extract_args(videos: Path, out: Path) -> list[str]:
    return [sys.executable, "cli.py"] + extract_command(videos, out, EXTRACT) + ["--quiet"]


def lock_holder(out: Path) -> int | None:
    try:
        return json.loads(Path(str(out) + ".lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None


@pytest.mark.timeout(600)
def test_extraction_killed_five_times_resumes_to_the_uninterrupted_store(
        resume_videos, resume_reference, tmp_path):
    from cli import app

    videos, ref = resume_videos, resume_reference     # conftest.py: shared, read only
    out = tmp_path / "feats.h5"
    rng = random.Random(1234)
    landed, runs = [], 0
    took_over_from = None
    for k in range(KILLS + 1):
        proc = subprocess.Popen(extract_args(videos, out), cwd=REPO, env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs += 1
        if k == 0:
            # a second extractor on the same output is refused, naming the holder's pid
            assert wait_for(proc, lambda: lock_holder(out) == proc.pid)
            os.kill(proc.pid, signal.SIGSTOP)
            res = CliRunner().invoke(app, extract_args(videos, out)[2:], env={"COLUMNS": "1000"})
            assert res.exit_code == 2 and f"locked by pid {proc.pid} on host" in res.output, \
                res.output
            landed.append(("holding the lock, before any shard", kill(proc)))
            took_over_from = proc.pid
            proc.communicate()
            continue
        if k < KILLS:
            shards_at_start = len(complete_shards(out))
            reached = wait_for(proc, lambda: len(complete_shards(out)) > shards_at_start)
            if reached:
                # somewhere in the next video or shard: with bf16 encoders a shard of this test
                # takes well under 0.1 s here, and 0-0.4 s let a run finish before the kill
                time.sleep(rng.uniform(0.0, 0.1))
            hit = kill(proc)
            _, err = proc.communicate()
            if k == 1:   # the run after the killed lock holder took its lock over
                assert f"took over the store lock left by pid {took_over_from}" in err, err[-3000:]
            landed.append((f"after shard {shards_at_start + 1}", hit))
            if not hit:
                break           # the run finished before this kill point: nothing left to do
        else:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
    print("extraction kills (where, landed):", landed)
    assert sum(hit for _, hit in landed) >= 3, landed

    assert_same_store(out, ref, atol=2e-3)
    with FeatureStore(out) as fs:
        ids = fs.video_ids.tolist()
        qids = fs.question_ids.tolist()
        assert sorted(ids) == [f"v{i}" for i in range(N_VIDEOS)] and len(set(ids)) == len(ids)
        assert sorted(qids) == [100 + i for i in range(N_VIDEOS)]
        assert any(f["path"].endswith("broken.mp4") for f in fs.failures)
    assert not verify_store(out)
    res = CliRunner().invoke(app, ["store", "verify", str(out)])
    assert res.exit_code == 0 and res.output.startswith("OK"), res.output
    assert not list((tmp_path / "feats.shards").glob(".*.tmp"))
    assert not Path(str(out) + ".lock").exists()


# ---- training -----------------------------------------------------------------------------

TINY = {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2, "curvature_hidden": 8,
        "dropout": 0.2}
TRAIN = {"epochs": 6, "batch_size": 4, "lr": 3e-3, "num_threads": 1, "align_weight": 0.1,
         "seed": 5, "patience": 0}
VOLATILE = {"time", "train_time", "val_time", "qa_per_s"}


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


EPOCH_LINE = re.compile(r"INFO epoch \d+/\d+ step \d+:")


def log_text(run: Path) -> str:
    try:
        return (run / "train.log").read_text(encoding="utf-8")
    except OSError:
        return ""


def epoch_lines(run: Path) -> int:
    """Epochs finished (checkpoint saved, then logged) by all invocations so far."""
    return len(EPOCH_LINE.findall(log_text(run)))


def saving(run: Path) -> bool:
    """A checkpoint is being written right now (its temp folder exists)."""
    ck = run / "checkpoints"
    return ck.is_dir() and any(p.name.startswith(".tmp-e") for p in ck.iterdir())


@pytest.mark.timeout(600)
def test_training_killed_between_and_within_epochs_resumes_to_identical_metrics(tmp_path):
    gen = make_store(tmp_path / "feats.h5", n_videos=32, seed=6)
    out = tmp_path / "runs"
    over = {"store": str(gen.path), "out": str(out), "name": "full", "progress": False,
            "model": dict(TINY), **TRAIN}
    run_model_with_torchscript_optimisation(TINY["d_model"])  # as earlier tests of a session do
    full = train(load_train_config(None, over))
    assert full.epochs_done == TRAIN["epochs"] and full.stopped == "completed"

    run = out / "part"
    sets = [f"{k}={json.dumps(v)}" for k, v in TRAIN.items()] + \
        [f"model.{k}={json.dumps(v)}" for k, v in TINY.items()]
    first = [sys.executable, "cli.py", "train", "--no-progress", "--store", str(gen.path), "--out",
             str(out), "--name", "part"] + [a for s in sets for a in ("--set", s)]
    again = [sys.executable, "cli.py", "train", "--no-progress", "--resume", str(run)]
    rng = random.Random(99)
    # where each kill lands: in the first epoch (no checkpoint yet), while a checkpoint is being
    # written (the epoch's metrics row already appended), just after an epoch, mid-epoch
    plan = ["first-epoch", "mid-checkpoint", "mid-epoch", "after-epoch", "mid-epoch"]
    landed = []
    for k in range(KILLS + 1):
        proc = subprocess.Popen(first if k == 0 else again, cwd=REPO, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if k == KILLS:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            break
        where = plan[k]
        done = epoch_lines(run)
        if where == "first-epoch":
            reached = wait_for(proc, lambda: "(new)" in log_text(run))
            if reached:
                time.sleep(rng.uniform(0.0, 0.3))
        elif where == "mid-checkpoint":
            wait_for(proc, lambda: saving(run))
        elif where == "after-epoch":
            wait_for(proc, lambda: epoch_lines(run) > done)
        else:
            if wait_for(proc, lambda: epoch_lines(run) > done):
                time.sleep(rng.uniform(0.05, 0.5))
        rows_before_kill = len(read_metrics(run))
        hit = kill(proc)
        _, err = proc.communicate()
        landed.append((where, rows_before_kill, hit))
        if not hit:
            assert proc.returncode == 0, err[-3000:]
            break
    print("training kills (where, metrics rows at the kill, landed):", landed)
    assert sum(hit for *_, hit in landed) >= 3, landed

    assert stable(read_metrics(run)) == stable(read_metrics(out / "full"))
    for link in ("last", "best"):
        a = load_file(str(find_checkpoint(out / "full", link).weights_path))
        b = load_file(str(find_checkpoint(run, link).weights_path))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (link, key)
        assert find_checkpoint(run, link).meta["epoch"] == \
            find_checkpoint(out / "full", link).meta["epoch"]
    sa = find_checkpoint(out / "full", "last").load_state()
    sb = find_checkpoint(run, "last").load_state()
    assert sa["loop"] == sb["loop"] and torch.equal(sa["data_generator"], sb["data_generator"])
    assert np.isfinite([r["train_loss"] for r in read_metrics(run)]).all()
    # temp folders of checkpoints whose writer was killed are removed by a later save
    assert not list((run / "checkpoints").glob(".tmp-*"))
