"""DDP: ``torchrun --nproc-per-node 2 cli.py train`` on CPU (gloo) ends with the same weights and
metrics as one process with the same global batch (to float tolerance)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from storegen import make_store  # noqa: E402

from train import find_checkpoint, load_train_config, read_metrics, train  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

# dropout 0 (each rank would draw other masks) and align_weight 0: the alignment loss is a
# per-rank mean over that rank's videos (InfoNCE over them), which equals the one-process value
# only approximately; the cross-entropy part is normalised to be exactly the global-batch mean.
# Parameters whose true gradient is zero here get only round-off gradients, which Adam scales up
# to full-size steps of random sign: the curvature head (align_weight 0 and expmap0/logmap0 round
# trips) and attention key biases (softmax is invariant to them).  They are compared loosely.
NOISE_ONLY = ("align.curvature", "k_proj.bias")

SETTINGS = {"sampler": "video", "epochs": 3, "batch_size": 16, "lr": 3e-3, "seed": 4,
            "align_weight": 0.0,
            "patience": 0, "num_threads": 1, "progress": False,
            "model": {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2,
                      "curvature_hidden": 8, "dropout": 0.0}}
BASE = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(ROOT / "cli.py"), "train"]
SETS = [f"{k}={json.dumps(v)}" for k, v in SETTINGS.items() if k != "model"] \
    + [f"model.{k}={json.dumps(v)}" for k, v in SETTINGS["model"].items()]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(),
                                    reason="torchrun not installed beside python")


def job_args(store: Path, out: Path) -> list[str]:
    """The options of the two-process job after ``train`` (the run's ``--name`` aside)."""
    return ["--store", str(store), "--out", str(out), "--device", "cpu", "--no-progress"] \
        + [a for s in SETS for a in ("--set", s)]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """The store and the uninterrupted two-process job ``runs/ddp``: one torchrun job that both
    tests compare against (one process, and the killed-and-resumed job)."""
    root = tmp_path_factory.mktemp("ddp")
    gen = make_store(root / "feats.h5", n_videos=24, seed=9)
    out = root / "runs"
    proc = subprocess.run(BASE + job_args(gen.path, out) + ["--name", "ddp"], cwd=root, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return gen.path, out / "ddp"


@needs_torchrun
def test_two_gloo_processes_match_one_process(ddp, tmp_path):
    store, run = ddp
    out = tmp_path / "runs"
    single = train(load_train_config(None, {**SETTINGS, "store": str(store), "out": str(out),
                                            "name": "single"}))
    assert "2 process(es)" in (run / "train.log").read_text()

    a = read_metrics(out / "single")
    b = read_metrics(run)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [4, 8, 12][: len(a)]
    for ra, rb in zip(a, b):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4, abs=1e-6)
        assert rb["train_acc"] == pytest.approx(ra["train_acc"])
        assert rb["val_overall"] == ra["val_overall"]
        assert rb["lr"] == pytest.approx(ra["lr"])
    wa = load_file(str(find_checkpoint(out / "single", "last").weights_path))
    wb = load_file(str(find_checkpoint(run, "last").weights_path))
    assert wa.keys() == wb.keys()
    for k in wa:
        if not wa[k].is_floating_point():
            assert torch.equal(wa[k], wb[k]), k
        elif any(n in k for n in NOISE_ONLY):
            torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=2e-3, msg=k)
        else:
            torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    assert single.best_epoch == json.loads(
        (find_checkpoint(run, "best").path / "meta.json").read_text())["epoch"]


@pytest.mark.timeout(600)
@needs_torchrun
def test_two_gloo_processes_killed_mid_run_resume_to_the_uninterrupted_result(ddp, tmp_path):
    """The whole torchrun job SIGKILLed once epoch 1 is recorded (while its checkpoint is
    written or during epoch 2), then ``torchrun ... train --resume``: the same metrics (time
    fields aside) and the same weights, exactly, as the same job uninterrupted."""
    import signal
    import time

    import psutil
    from test_train_resume import stable

    store, full = ddp
    out = tmp_path / "runs"
    part = out / "part"
    proc = subprocess.Popen(BASE + job_args(store, out) + ["--name", "part"], cwd=tmp_path,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 300          # guards against a hung child only
    while proc.poll() is None and time.monotonic() < deadline and not (
            (part / "metrics.jsonl").is_file() and read_metrics(part)):
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed"
    ranks = psutil.Process(proc.pid).children(recursive=True)   # torchrun starts each in its own session
    for p in [psutil.Process(proc.pid)] + ranks:
        p.send_signal(signal.SIGKILL)
    proc.communicate()
    psutil.wait_procs(ranks, timeout=60)
    assert len(read_metrics(part)) < SETTINGS["epochs"]
    again = subprocess.run(BASE + ["--resume", str(part), "--no-progress"], cwd=tmp_path, env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert stable(read_metrics(part)) == stable(read_metrics(full))
    wa = load_file(str(find_checkpoint(full, "last").weights_path))
    wb = load_file(str(find_checkpoint(part, "last").weights_path))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
