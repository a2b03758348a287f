"""Checkpoints: atomic under failures and SIGKILL, never execute code from the file when loaded
(safetensors weights; ``torch.load(weights_only=True)`` state), and refuse clearly to resume or
evaluate with a checkpoint of another variant or of other store dims."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from storegen import make_store
from train import CheckpointError, find_checkpoint, load_train_config, read_metrics, train
from train.checkpoint import save_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2, "curvature_hidden": 8,
        "dropout": 0.0}


def invoke(args: list[str]):
    from cli import app

    return CliRunner().invoke(app, args, env={"COLUMNS": "1000"})


def filled_model(value: float) -> torch.nn.Module:
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(value)
    return m


def check_consistent(ckpt_dir: Path, link: str) -> int:
    """The checkpoint ``link`` points at is complete and all of a piece: weights, state and meta
    come from the same save.  Returns its epoch."""
    c = find_checkpoint(ckpt_dir.parent, link)
    assert {p.name for p in c.path.iterdir()} == {"model.safetensors", "state.pt", "meta.json"}
    epoch = c.meta["epoch"]
    m = filled_model(0.0)
    c.load_weights(m)
    assert all(bool((p == float(epoch)).all()) for p in m.parameters()), (link, epoch)
    assert int(c.load_state()["epoch"]) == epoch
    return epoch


# ---- atomic saving --------------------------------------------------------------------------


def test_a_failing_save_leaves_the_previous_checkpoints_intact(tmp_path):
    ck = tmp_path / "checkpoints"
    save_checkpoint(ck, 1, filled_model(1), {"epoch": torch.tensor(1)}, {"variant": "x"},
                    links=("last", "best"))
    save_checkpoint(ck, 2, filled_model(2), {"epoch": torch.tensor(2)}, {"variant": "x"})
    with pytest.raises(Exception, match="pickle|lambda"):   # torch.save cannot write a lambda
        save_checkpoint(ck, 3, filled_model(3), {"epoch": torch.tensor(3), "f": lambda: 0},
                        {"variant": "x"}, links=("last", "best"))
    assert os.readlink(ck / "last") == "e0002" and os.readlink(ck / "best") == "e0001"
    assert not (ck / "e0003").exists()
    assert check_consistent(ck, "last") == 2 and check_consistent(ck, "best") == 1
    save_checkpoint(ck, 3, filled_model(3), {"epoch": torch.tensor(3)}, {"variant": "x"})
    assert sorted(p.name for p in ck.iterdir()) == ["best", "e0001", "e0003", "last"]   # temp gone


SAVER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from train.checkpoint import save_checkpoint, find_checkpoint

    def filled_model(value):   # as in the test module
        m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
        with torch.no_grad():
            for p in m.parameters():
                p.fill_(value)
        return m

    ck = Path(sys.argv[1])
    try:
        epoch = find_checkpoint(ck.parent, "last").meta["epoch"] + 1
    except Exception:
        epoch = 1
    while True:
        state = {"epoch": torch.tensor(epoch), "blob": torch.randn(1 << 18)}
        links = ("last", "best") if epoch % 3 == 0 else ("last",)
        save_checkpoint(ck, epoch, filled_model(float(epoch)), state, {"variant": "x"}, links=links)
        print(epoch, flush=True)
        epoch += 1
""")


def test_a_writer_killed_at_random_moments_never_leaves_a_broken_checkpoint(tmp_path):
    ck = tmp_path / "checkpoints"
    rng = random.Random(7)
    last_epoch, mid_save, kills = 0, 0, 0
    # at least 4 kills, and on until one lands inside a save (a loaded machine can miss 4 times)
    while kills < 4 or (mid_save == 0 and kills < 16):
        kills += 1
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(ck)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()          # it is inside its save loop
            assert first.strip().isdigit(), proc.stderr.read()[-3000:]
            time.sleep(rng.uniform(0.0, 0.3))      # then somewhere in a later save
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
        mid_save += any(p.name.startswith(".tmp-") for p in ck.iterdir())   # killed in a save
        epoch = check_consistent(ck, "last")
        assert epoch >= max(last_epoch, int(first))          # nothing saved is ever lost
        best = check_consistent(ck, "best") if (ck / "best").is_symlink() else None
        # "best" is switched before "last": a kill between the two switches leaves "best" at
        # the complete checkpoint of the save in flight, one epoch ahead of "last"
        assert best is None or (best % 3 == 0 and best <= epoch + 1)
        last_epoch = epoch
    assert mid_save >= 1          # the kills did land inside saves (the save is most of the loop)


# ---- loading runs no code from the file -----------------------------------------------------


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: code chosen by whoever wrote the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run 'a' (shmamba, stopped after epoch 1 of 2), run 'b' (euclidean) on the same store, run
    'c' (shmamba) on a store with other dims."""
    root = tmp_path_factory.mktemp("ckruns")
    s32 = make_store(root / "s32" / "feats.h5", n_videos=16, seed=1, keep_arrays=False)
    s48 = make_store(root / "s48" / "feats.h5", n_videos=16, visual_dim=48, seed=2,
                     keep_arrays=False)
    out = root / "runs"

    def run(name, store, **kw):
        over = {"store": str(store), "out": str(out), "name": name, "epochs": 2, "batch_size": 16,
                "progress": False, "num_threads": 1, "model": dict(TINY), "patience": 0, **kw}
        return train(load_train_config(None, over)).run_dir

    return {"a": run("a", s32, stop_after=1), "b": run("b", s32, variant="euclidean", epochs=1),
            "c": run("c", s48, epochs=1), "s32": s32, "out": out}


def fresh_copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst, symlinks=True)
    return dst


def test_a_crafted_state_file_is_refused_and_its_code_never_runs(runs, tmp_path):
    run = fresh_copy(runs["a"], tmp_path / "a")
    marker = tmp_path / "pwned"
    state = find_checkpoint(run, "last").path / "state.pt"
    torch.save({"loop": Payload(marker)}, state)     # a torch-saved pickle with a payload
    with pytest.raises(CheckpointError, match="refused to load"):
        find_checkpoint(run, "last").load_state()
    res = invoke(["train", "--resume", str(run), "--no-progress"])
    assert res.exit_code == 2 and "refused to load" in res.output and "state.pt" in res.output, \
        res.output
    assert not marker.exists()
    torch.load(state, weights_only=False)            # proof that the payload is live
    assert marker.is_dir()


def test_a_crafted_weights_file_is_refused_and_its_code_never_runs(runs, tmp_path):
    run = fresh_copy(runs["a"], tmp_path / "a")
    marker = tmp_path / "pwned"
    weights = find_checkpoint(run, "best").weights_path
    torch.save({"w": Payload(marker)}, weights)      # a pickle where safetensors belong
    with pytest.raises(CheckpointError, match="model.safetensors: cannot load"):
        find_checkpoint(run, "best").load_weights(torch.nn.Linear(2, 2))
    res = invoke(["eval", "--run", str(run), "--split", "test", "--no-plots", "--device", "cpu"])
    assert res.exit_code == 2 and "model.safetensors" in res.output, res.output
    assert not marker.exists()


# ---- another variant, other store dims ------------------------------------------------------


def swap_last(run: Path, donor: Path) -> None:
    """Put ``donor``'s last checkpoint where ``run``'s last link points."""
    target = find_checkpoint(run, "last").path
    shutil.rmtree(target)
    shutil.copytree(find_checkpoint(donor, "last").path, target)


@pytest.mark.parametrize("donor,match", [
    ("b", "variant: checkpoint has 'euclidean', requested 'shmamba'"),
    ("c", "visual_dim: checkpoint has 48, store has 32"),
])
def test_resume_with_a_checkpoint_of_another_variant_or_dims_fails_clearly(runs, tmp_path, donor,
                                                                          match):
    run = fresh_copy(runs["a"], tmp_path / "a")
    swap_last(run, runs[donor])
    res = invoke(["train", "--resume", str(run), "--no-progress"])
    assert res.exit_code == 2 and match in res.output, res.output
    assert [r["epoch"] for r in read_metrics(run)] == [1]   # nothing added


def test_eval_with_a_checkpoint_of_other_dims_fails_clearly(runs):
    ckpt = find_checkpoint(runs["c"], "last").path
    res = invoke(["eval", "--run", str(runs["a"]), "--checkpoint", str(ckpt), "--no-plots",
                  "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert "visual_dim: checkpoint" in res.output and "has 48" in res.output, res.output


def test_weights_get_the_same_file_mode_as_the_rest_of_the_run(tmp_path):
    """safetensors writes 0600; the run's other files follow the umask (0644 under 022)."""
    import stat

    model = torch.nn.Linear(3, 2)
    old = os.umask(0o022)
    try:
        folder = save_checkpoint(tmp_path / "checkpoints", 1, model, {"x": torch.zeros(1)}, {})
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert set(modes.values()) == {0o644}, modes
