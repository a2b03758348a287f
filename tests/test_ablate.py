"""``ablate`` on a real tiny store: the table has every type with a spread over seeds, a killed
ablation (a real child process, SIGKILL) continues without redoing finished runs, the curvature
record is in metrics.jsonl (and a collapse is warned about), and the plots are written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from storegen import MUSIC_TYPES, make_store  # noqa: E402

from store.reader import FeatureStore  # noqa: E402
from train import StoreData, load_train_config, read_metrics  # noqa: E402
from train.ablate import RUN_RESULT, AblationError, ablate, make_spec  # noqa: E402
from train.curvature import COLLAPSE_FRACTION, curvature_record  # noqa: E402
from model import build_model  # noqa: E402

import cli  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000", "PYTHONPATH": str(REPO)}
TINY = {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2, "curvature_hidden": 8}


def base_config(store: Path, out: Path, epochs: int = 1):
    return load_train_config(None, {"store": str(store), "out": str(out), "epochs": epochs,
                                    "batch_size": 16, "lr": 3e-3, "num_threads": 1,
                                    "model": dict(TINY)})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = make_store(tmp_path_factory.mktemp("ablate") / "feats.h5", n_videos=60, seed=2,
                      keep_arrays=False)
    fs = FeatureStore(path)
    test_types = set(fs.questions("type", rows=fs.split_rows("test")).tolist())
    assert test_types == set(range(len(MUSIC_TYPES)))   # every type is scored
    return path


@pytest.fixture(scope="module")
def ablated(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    spec = make_spec(base_config(store, out), "shmamba,euclidean", 2, out)
    return spec, ablate(spec, show=False)


def test_ablation_table_has_every_type_with_a_spread_over_seeds(ablated):
    spec, result = ablated
    assert result.trained == 4 and result.skipped == 0
    summary = json.loads((spec.out / "ablation.json").read_text())
    assert summary["order"] == ["shmamba", "euclidean"] and summary["seeds"] == [0, 1]
    for name, s in summary["variants"].items():
        assert s["seeds"] == [0, 1] and s["parameters"] > 0 and s["train_time_s"]["mean"] > 0
        assert set(s["types"]) == set(MUSIC_TYPES)
        assert set(s["groups"]) == {"Audio", "Visual", "Audio-Visual"}
        for stat in [s["overall"], *s["groups"].values(), *s["types"].values()]:
            assert stat["n"] == 2 and stat["mean"] is not None and stat["std"] is not None
    # the seeds differ: some spread is seen, and the comparison to the reference is made
    assert any(s["overall"]["std"] > 0 or any(t["std"] > 0 for t in s["types"].values())
               for s in summary["variants"].values())
    assert summary["variants"]["euclidean"]["vs_reference"] is not None
    md = (spec.out / "ablation.md").read_text()
    assert all(t in md for t in MUSIC_TYPES) and "±" in md and "`euclidean`" in md
    assert (spec.out / "ablation.png").stat().st_size > 0
    # every run folder is a normal run folder with the usual artefacts
    for v in ("shmamba", "euclidean"):
        for seed in (0, 1):
            run = spec.run_dir(v, seed)
            assert (run / "config.json").is_file() and (run / "checkpoints" / "best").exists()
            assert (run / "report_test.json").is_file() and (run / RUN_RESULT).is_file()


def test_a_finished_ablation_is_not_run_again_and_other_settings_are_refused(ablated):
    spec, _ = ablated
    again = ablate(spec, show=False)
    assert again.trained == 0 and again.skipped == 4
    other = make_spec(base_config(spec.base.store, spec.out, epochs=2), "shmamba", 2, spec.out)
    with pytest.raises(AblationError, match="epochs: folder has 1, given 2"):
        ablate(other, show=False)
    with pytest.raises(AblationError, match="unknown variant.*nope"):
        make_spec(spec.base, "shmamba,nope", 2, spec.out)
    # on the command line: an error message and exit status 2, never a silent success
    runner = CliRunner()
    for args, message in ((["--variants", "nope"], "unknown variant"),
                          (["--seeds", "0"], "--seeds must be >= 1"),
                          (["--split", "holdout"], "no 'holdout' questions")):
        res = runner.invoke(cli.app, ["ablate", "--store", str(spec.base.store), "--out",
                                      str(spec.out / "other"), *args], env={"COLUMNS": "1000"})
        assert res.exit_code == 2 and message in res.output, res.output


def test_curvature_stats_are_in_metrics_and_plotted(ablated):
    spec, _ = ablated
    rows = read_metrics(spec.run_dir("shmamba", 0))
    for row in rows:
        for split in ("train", "val"):
            stats = row["curvature"][split]
            assert set(stats) >= {"mean", "std", "min", "max", "p5", "p95", "n", "collapsed"}
            assert 0 < stats["min"] <= stats["p5"] <= stats["mean"] <= stats["p95"] <= stats["max"] < 1
    assert all("curvature" not in r for r in read_metrics(spec.run_dir("euclidean", 0)))
    assert (spec.run_dir("shmamba", 0) / "plots" / "curvature_epochs.png").stat().st_size > 0


def test_embedding_views_are_written_by_eval(ablated):
    spec, _ = ablated
    for v in ("shmamba", "euclidean"):
        plots = spec.run_dir(v, 1) / "plots"
        for name in ("test_poincare.png", "test_tsne.png"):
            assert (plots / name).stat().st_size > 0


def test_a_collapsed_curvature_is_warned_about(store):
    model = build_model("shmamba", **TINY, audio_dim=128, visual_dim=32, text_dim=32, n_answers=6)
    with torch.no_grad():
        model.align.curvature.mlp[-1].bias.fill_(-30.0)   # sigmoid ~ 0: c at its floor
    data = StoreData(FeatureStore(store), ["train", "val"], "cpu", with_tokens=False)
    warnings: list[str] = []
    record = curvature_record(model, data, ["train", "val"], 1.0, 64, True, warnings.append)
    assert record["train"]["collapsed"] >= COLLAPSE_FRACTION and len(warnings) == 2
    assert "curvature collapse on train" in warnings[0]
    with torch.no_grad():
        model.align.curvature.mlp[-1].bias.fill_(0.0)
    warnings.clear()
    curvature_record(model, data, ["train"], 1.0, 64, True, warnings.append)
    assert not warnings


def _wait_for(proc: subprocess.Popen, condition, limit: float = 300.0) -> bool:
    """Poll until ``condition()`` holds (True) or the child exits; ``limit`` only guards a hang."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return bool(condition())
        time.sleep(0.005)
    raise AssertionError(f"child {proc.pid} neither reached the kill point nor exited")


def test_a_killed_ablation_continues_without_redoing_finished_runs(store, tmp_path):
    out, config = tmp_path / "ablation", tmp_path / "tiny.toml"
    config.write_text("batch_size = 16\nlr = 0.003\n\n[model]\n"
                      + "".join(f"{k} = {v}\n" for k, v in TINY.items()))
    args = [sys.executable, "cli.py", "ablate", "--store", str(store), "--variants", "shmamba",
            "--seeds", "2", "--epochs", "3", "--out", str(out), "--config", str(config),
            "--set", "num_threads=1", "--no-progress"]
    first, second = out / "shmamba-seed0", out / "shmamba-seed1"
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    # kill point: the first run is finished and the second has its first checkpoint
    assert _wait_for(proc, lambda: (second / "checkpoints" / "last").exists()), proc.stderr.read()
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the ablation finished before the kill landed"
    assert (first / RUN_RESULT).is_file() and not (second / RUN_RESULT).exists()
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in
            (first / RUN_RESULT, first / "metrics.jsonl", first / "report_test.json")}
    res = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "shmamba seed 0: already finished" in res.stderr
    assert "1 run(s) trained now, 1 already finished" in res.stderr
    for p, (mtime, data) in kept.items():
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    assert "resumed from" in (second / "train.log").read_text()
    assert [r["epoch"] for r in read_metrics(second)] == [1, 2, 3]
    summary = json.loads((out / "ablation.json").read_text())
    assert summary["variants"]["shmamba"]["seeds"] == [0, 1]
