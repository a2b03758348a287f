"""``--resume`` continues a run exactly: an interrupted run resumed from its last checkpoint ends
with the same metrics and weights as the same run uninterrupted (CPU, same seed)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from storegen import make_store  # noqa: E402

from common.config import ConfigError  # noqa: E402
from train import find_checkpoint, load_train_config, prepare_config, read_metrics, train  # noqa: E402

torch.set_num_threads(1)

TINY = {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2, "curvature_hidden": 8,
        "dropout": 0.2}          # dropout on: the RNG state must be restored too
VOLATILE = {"time", "train_time", "val_time", "qa_per_s"}


def cfg_for(store, out, name, **kw):
    over = {"store": str(store), "out": str(out), "name": name, "epochs": 4, "batch_size": 16,
            "lr": 3e-3, "progress": False, "num_threads": 1, "model": dict(TINY),
            "align_weight": 0.1, "seed": 11, "patience": 0}
    over.update(kw)
    return load_train_config(None, over)


def stable(rows):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def run_model_with_torchscript_optimisation(d_model: int = 16, calls: int = 5) -> None:
    """What earlier tests of a pytest session do: forward/backward through the model's hyperbolic
    alignment with TorchScript graph optimisation on (the default).  Scripted geoopt math would
    keep optimised graphs with other gradient rounding for the rest of the process; an in-process
    run after this must still equal runs in fresh processes."""
    from model.hyperbolic import Alignment

    gen = torch.Generator().manual_seed(0)
    align = Alignment(d_model, curvature_hidden=8)
    with torch.jit.optimized_execution(True):
        for _ in range(calls):
            a = torch.randn(3, 5, d_model, generator=gen, requires_grad=True)
            v = torch.randn(3, 5, d_model, generator=gen, requires_grad=True)
            ua, uv, loss, _ = align(a, v)
            (loss + ua.sum() + uv.sum()).backward()


def weights(run: Path, which: str = "last") -> dict:
    return load_file(str(find_checkpoint(run, which).weights_path))


@pytest.mark.parametrize("streamed", [False, True], ids=["resident", "streamed"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, streamed):
    gen = make_store(tmp_path / "feats.h5", n_videos=24, seed=5)
    budget = 1e-6 if streamed else 0.0
    out = tmp_path / "runs"
    full = train(cfg_for(gen.path, out, "full", memory_budget_mb=budget))
    assert full.stopped == "completed" and full.epochs_done == 4

    part = train(cfg_for(gen.path, out, "part", memory_budget_mb=budget, stop_after=2))
    assert part.stopped == "stop_after" and part.epochs_done == 2
    assert len(read_metrics(out / "part")) == 2
    # resume through the CLI's path: runs/latest, recorded config, only runtime fields changed
    cfg, run_dir = prepare_config(None, {"progress": False}, str(out / "latest"))
    assert run_dir == (out / "part").resolve() and cfg.stop_after == 0
    resumed = train(cfg, resume=str(out / "latest"))
    assert resumed.stopped == "completed" and resumed.epochs_done == 4

    assert stable(read_metrics(out / "part")) == stable(read_metrics(out / "full"))
    a, b = weights(out / "full"), weights(out / "part")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = find_checkpoint(out / "full", "last").load_state()
    sb = find_checkpoint(out / "part", "last").load_state()
    assert torch.equal(sa["data_generator"], sb["data_generator"])
    assert sa["loop"] == sb["loop"]


def test_resume_refuses_a_changed_config_and_finished_runs_do_nothing(tmp_path):
    gen = make_store(tmp_path / "feats.h5", n_videos=16, seed=2)
    out = tmp_path / "runs"
    train(cfg_for(gen.path, out, "r", epochs=2, stop_after=1))
    with pytest.raises(ConfigError, match="lr differs from the run's recorded config"):
        prepare_config(None, {"lr": 0.5}, str(out / "r"))
    cfg, _ = prepare_config(None, {}, str(out / "r"))
    assert train(cfg, resume=str(out / "r")).epochs_done == 2
    rows = read_metrics(out / "r")
    again = train(cfg, resume=str(out / "r"))          # already finished: no new epochs
    assert again.epochs_done == 2 and read_metrics(out / "r") == rows


def test_resume_in_new_processes_through_the_cli(tmp_path):
    """Interrupted and resumed in two separate ``cli.py train`` processes (fresh RNG, fresh
    TorchScript state) == one uninterrupted in-process run, also when this process ran the model
    with TorchScript optimisation before (as earlier tests of a session do)."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    gen = make_store(tmp_path / "feats.h5", n_videos=16, seed=8)
    out = tmp_path / "runs"
    run_model_with_torchscript_optimisation()
    train(cfg_for(gen.path, out, "full", epochs=3))
    sets = ["epochs=3", "batch_size=16", "lr=0.003", "num_threads=1", "align_weight=0.1",
            "seed=11", "patience=0"] + [f"model.{k}={json.dumps(v)}" for k, v in TINY.items()]
    base = [sys.executable, str(root / "cli.py"), "train", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    first = base + ["--store", str(gen.path), "--out", str(out), "--name", "part"] \
        + [a for s in sets + ["stop_after=1"] for a in ("--set", s)]
    p = subprocess.run(first, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(read_metrics(out / "part")) == 1
    p = subprocess.run(base + ["--resume", str(out / "part")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert stable(read_metrics(out / "part")) == stable(read_metrics(out / "full"))
    a, b = weights(out / "full"), weights(out / "part")
    for k in a:
        assert torch.equal(a[k], b[k]), k
