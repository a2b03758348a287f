"""Training from a real (small, random) store: data on the device vs the slow reference, streaming
vs resident, config/schedule/checkpoint behaviour, and a short training run that learns."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from storegen import make_store  # noqa: E402

from common.config import ConfigError  # noqa: E402
from store.reader import FeatureStore  # noqa: E402
from train import (CheckpointError, DataError, StoreData, find_checkpoint, load_train_config,  # noqa: E402
                   read_metrics, reference_batch, resume_config, train)
from train.checkpoint import save_checkpoint  # noqa: E402
from train.data import batch_indices, epoch_order  # noqa: E402
from train.optim import lr_factor, make_optimizers, make_schedulers  # noqa: E402
from train.step import AUTO_COMPILE_STEPS, resolve_compile  # noqa: E402

torch.set_num_threads(1)

TINY = {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2, "curvature_hidden": 8,
        "dropout": 0.0}


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "feats.h5", seed=3)


def tiny_cfg(store, out, **kw):
    over = {"store": str(store), "out": str(out), "batch_size": 16, "lr": 3e-3, "epochs": 3,
            "progress": False, "num_threads": 1, "model": dict(TINY), "warmup_ratio": 0.1}
    over.update(kw)
    return load_train_config(None, over)


def assert_batches_equal(a, b, video_rows_a=None, video_rows_b=None):
    for name in ("audio", "visual", "audio_present", "video_index", "sentence", "tokens",
                 "token_mask", "answer", "qtype", "index"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert x.shape == y.shape, name
        assert torch.equal(x.cpu(), y.cpu()), name
    if video_rows_a is not None:
        assert np.array_equal(video_rows_a, video_rows_b)


# ---- data ------------------------------------------------------------------------------------


def test_device_gather_equals_per_sample_reference_and_raw_arrays(gen):
    store = FeatureStore(gen.path)
    data = StoreData(store, ["train", "val"], "cpu", with_tokens=True)
    assert data.fully_resident
    info = data.splits["train"]
    assert len(info) == int((gen.splits == "train").sum())
    g = torch.Generator().manual_seed(7)
    order = epoch_order(len(info), g)
    for idx in batch_indices(order, 13)[:3]:
        fast = data.batch("train", idx)
        ref = reference_batch(store, "train", idx.tolist(), with_tokens=True)
        assert_batches_equal(fast, ref, data.v_rows[fast.videos.numpy()], ref.videos.numpy())
        # and both equal what the generator wrote (raw arrays, global rows)
        qrows = info.q_rows[idx.numpy()]
        vrows = data.v_rows[fast.videos.numpy()]
        assert np.array_equal(fast.sentence.numpy(), gen.sentence[qrows].astype(np.float32))
        assert np.array_equal(fast.tokens.numpy(), gen.tokens[qrows].astype(np.float32))
        assert np.array_equal(fast.visual.numpy(), gen.visual[vrows].astype(np.float32))
        assert np.array_equal(fast.audio.numpy(), gen.audio[vrows].astype(np.float32))
        assert np.array_equal(fast.answer.numpy(), gen.answers[qrows])
        # each question gets its own video's features, shared (not copied) per distinct video
        assert np.array_equal(vrows[fast.video_index.numpy()], gen.question_video[qrows])
        assert len(vrows) == len(np.unique(gen.question_video[qrows]))


@pytest.mark.parametrize("budget_kind", ["nothing", "videos-only"])
def test_streaming_gives_the_same_batches_as_resident(gen, budget_kind):
    store = FeatureStore(gen.path)
    resident = StoreData(store, ["train"], "cpu", with_tokens=True)
    a = store.attrs
    video_mib = len(resident.v_rows) * (a["T"] * (a["audio_dim"] + a["visual_dim"]) * 2 + 1) / 2**20
    budget = 1e-6 if budget_kind == "nothing" else video_mib * 1.01
    streamed = StoreData(store, ["train"], "cpu", with_tokens=True, memory_budget_mb=budget,
                         prefetch=2)
    assert not streamed.questions_resident["train"]
    assert streamed.videos_resident == (budget_kind == "videos-only")
    order = epoch_order(len(resident.splits["train"]), torch.Generator().manual_seed(1))
    idx = batch_indices(order, 16)
    got = list(streamed.batches("train", idx))
    want = list(resident.batches("train", idx))
    assert len(got) == len(want) == len(idx)
    for x, y in zip(got, want):
        assert_batches_equal(x, y)
        assert torch.equal(x.videos, y.videos)


def test_store_dims_that_differ_from_the_config_are_refused(gen, tmp_path):
    cfg = tiny_cfg(gen.path, tmp_path / "runs", model={**TINY, "visual_dim": 64})
    with pytest.raises(ValueError, match=r"visual_dim: store has 32, config model has 64"):
        train(cfg)
    assert not (tmp_path / "runs").exists()      # refused before any run directory was made
    from train.data import check_dims, store_dims

    with pytest.raises(DataError, match=r"text_dim: store has 32, checkpoint has 512"):
        check_dims(str(gen.path), store_dims(FeatureStore(gen.path)), {"text_dim": 512},
                   "checkpoint")


def test_empty_split_is_an_error_naming_it(gen):
    with pytest.raises(DataError, match="split 'dev' has no questions"):
        StoreData(FeatureStore(gen.path), ["dev"], "cpu")


# ---- config, schedule, optimizers ---------------------------------------------------------------


def test_config_file_then_overrides_and_resume_rules(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nlr: 0.01\nmodel:\n  d_model: 32\n")
    cfg = load_train_config(f, {"lr": 0.02, "model.n_layers": 2})
    assert (cfg.epochs, cfg.lr, cfg.model) == (7, 0.02, {"d_model": 32, "n_layers": 2})
    with pytest.raises(ConfigError, match="unknown field"):
        load_train_config(None, {"epochz": 3})
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        load_train_config(None, {"batch_size": 0})
    assert load_train_config(None, {"compile": True, "amp": "off"}).compile  # float32: allowed
    # regions are right under bf16; older config.json files hold true/false
    assert load_train_config(None, {"compile": "regions", "amp": "bf16"}).compile == "regions"
    assert load_train_config(None, {"compile": "false"}).compile is False
    assert load_train_config(None, {}).compile == "auto"  # regions on the CUDA-graph step
    # auto compiles runs long enough to gain from it; an explicit setting is kept
    assert resolve_compile("auto", AUTO_COMPILE_STEPS) == "regions"
    assert resolve_compile("auto", AUTO_COMPILE_STEPS - 1) is False
    assert resolve_compile(True, 1) is True and resolve_compile("regions", 1) == "regions"
    with pytest.raises(ConfigError, match=r"'region' is not true/false or one of \['auto', 'regions'\]"):
        load_train_config(None, {"compile": "region"})
    recorded = json.loads(json.dumps(cfg.__dict__))
    recorded["stop_after"] = 2
    again = resume_config(recorded, {"device": "cpu", "progress": False})
    assert again.stop_after == 0 and again.lr == 0.02          # stop_after is per invocation
    with pytest.raises(ConfigError, match="lr differs"):
        resume_config(recorded, {"lr": 0.5})


def test_lr_schedule_warmup_then_cosine_to_min():
    total, warm = 100, 10
    f = [lr_factor(s, warm, total, "cosine", 0.1) for s in range(total + 1)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10]))                      # rising warm-up
    assert all(a >= b for a, b in zip(f[10:], f[11:]))                     # then decaying
    assert f[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f[total] == pytest.approx(0.1)
    assert lr_factor(50, 0, 100, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(50, 0, 100, "constant", 0.0) == 1.0


def test_optimizer_groups_and_scheduler_drive_the_lr():
    from model import build_model

    model = build_model("shmamba", audio_dim=8, visual_dim=8, text_dim=8, n_answers=3, **TINY)
    cfg = load_train_config(None, {"lr": 0.1, "weight_decay": 0.5, "warmup_steps": 2,
                                   "epochs": 1})
    opts = make_optimizers(model, cfg)
    groups = opts[0].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        if p.ndim < 2 or "A_log" in name:
            assert id(p) not in decayed, name
    scheds, warm = make_schedulers(opts, cfg, total_steps=10)
    assert warm == 2
    assert groups[0]["lr"] == pytest.approx(0.05)      # step 0 of a 2-step warm-up
    opts[0].step()
    scheds[0].step()
    assert groups[0]["lr"] == pytest.approx(0.1)


# ---- checkpoints -----------------------------------------------------------------------------


def test_checkpoints_are_atomic_linked_and_refuse_other_variants(tmp_path):
    from model import build_model

    dims = dict(audio_dim=8, visual_dim=8, text_dim=8, n_answers=3)
    model = build_model("shmamba", **dims, **TINY)
    ck = tmp_path / "checkpoints"
    state = {"x": torch.arange(3), "loop": {"epoch": 1}}
    save_checkpoint(ck, 1, model, state, {"variant": "shmamba"}, links=("last", "best"))
    save_checkpoint(ck, 2, model, state, {"variant": "shmamba"}, links=("last",))
    save_checkpoint(ck, 3, model, state, {"variant": "shmamba"}, links=("last",))
    assert os.readlink(ck / "last") == "e0003" and os.readlink(ck / "best") == "e0001"
    assert sorted(p.name for p in ck.iterdir()) == ["best", "e0001", "e0003", "last"]  # e0002 pruned
    c = find_checkpoint(tmp_path, "last")
    assert c.meta["epoch"] == 3 and torch.equal(c.load_state()["x"], torch.arange(3))
    other = build_model("euclidean", **dims, **TINY)
    with pytest.raises(CheckpointError, match="euclidean"):
        c.load_weights(other)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        find_checkpoint(tmp_path / "nowhere", "best")


# ---- a short run -----------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_every_artefact(gen, tmp_path):
    cfg = tiny_cfg(gen.path, tmp_path / "runs", epochs=4, name="first", align_weight=0.1)
    result = train(cfg)
    run = tmp_path / "runs" / "first"
    assert result.run_dir == run and result.epochs_done == 4 and result.stopped == "completed"
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for key in ("epoch", "step", "train_loss", "ce", "align", "val_overall", "lr", "time",
                    "qa_per_s"):
            assert r[key] is not None, key
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["ce"] < rows[0]["ce"]
    assert rows[-1]["step"] == 4 * math.ceil(int((gen.splits == "train").sum()) / 16)
    # artefacts
    assert json.loads((run / "config.json").read_text())["name"] == "first"
    assert json.loads((run / "store.json").read_text()) == FeatureStore(gen.path).identity()
    assert "epoch 4/4" in (run / "train.log").read_text()
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()
    for link in ("last", "best"):
        c = find_checkpoint(run, link)
        assert {p.name for p in c.path.iterdir()} == {"model.safetensors", "state.pt", "meta.json"}
        assert c.meta["dims"]["visual_dim"] == 32 and c.meta["variant"] == "shmamba"
    best = find_checkpoint(run, "best")
    assert best.meta["epoch"] == result.best_epoch
    assert best.meta["val_overall"] == max(r["val_overall"] for r in rows)
    state = find_checkpoint(run, "last").load_state()     # weights_only=True
    assert state["loop"]["epoch"] == 4 and state["loop"]["step"] == rows[-1]["step"]
    # a second run with the same name is refused; latest follows the newest run
    with pytest.raises(Exception, match="already exists"):
        train(cfg)


def test_video_grouped_order_keeps_each_videos_questions_together(gen):
    from train.data import video_grouped_order

    data = StoreData(FeatureStore(gen.path), ["train"], "cpu", with_tokens=False)
    vloc = data.splits["train"].video_local
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    order = video_grouped_order(vloc, g1)
    assert sorted(order.tolist()) == list(range(len(vloc)))             # a permutation
    assert torch.equal(order, video_grouped_order(vloc, g2))           # seeded
    runs = vloc[order.numpy()]
    changes = int((runs[1:] != runs[:-1]).sum())
    assert changes == len(np.unique(vloc)) - 1                         # one run per video
    assert not torch.equal(order, video_grouped_order(vloc, g1))        # a new order next epoch
    # batches then hold far fewer distinct videos than questions
    batches = batch_indices(order, 16)
    distinct = sum(len(data.batch("train", b).videos) for b in batches)
    assert distinct < 0.5 * len(vloc)


def test_early_stopping_after_patience_evaluations_without_gain(gen, tmp_path):
    # an LR too small to change any prediction: validation accuracy never rises after epoch 1
    cfg = tiny_cfg(gen.path, tmp_path / "runs", epochs=6, patience=2, lr=1e-12, name="es")
    result = train(cfg)
    assert result.stopped == "early_stop" and result.epochs_done == 3 and result.best_epoch == 1
    rows = read_metrics(tmp_path / "runs" / "es")
    assert [r["best"] for r in rows] == [True, False, False]
    assert find_checkpoint(tmp_path / "runs" / "es", "best").meta["epoch"] == 1


def test_a_run_that_fails_before_its_first_checkpoint_leaves_latest_alone(gen, tmp_path):
    out = tmp_path / "runs"
    good = train(tiny_cfg(gen.path, out, epochs=1, name="good"))
    assert (out / "latest").resolve() == good.run_dir.resolve()
    with pytest.raises(DataError, match="too few"):
        train(tiny_cfg(gen.path, out, epochs=1, name="bad", batch_size=10_000, drop_last=True))
    # the failed run keeps its folder and log, but eval's default stays the good run
    assert (out / "bad" / "train.log").is_file()
    assert (out / "latest").resolve() == good.run_dir.resolve()


def test_compile_asked_for_the_eager_step_is_said_to_do_nothing(gen, tmp_path):
    """On the CPU the eager step runs: compile = regions must not pass silently."""
    res = train(tiny_cfg(gen.path, tmp_path / "runs", epochs=1, name="c", compile="regions"))
    log = (res.run_dir / "train.log").read_text()
    assert "training step: eager" in log
    assert "compile = regions applies to the CUDA-graph step only" in log
    # the default (auto) compiles where it can and says nothing where it cannot
    res = train(tiny_cfg(gen.path, tmp_path / "runs", epochs=1, name="d"))
    assert "applies to the CUDA-graph step only" not in (res.run_dir / "train.log").read_text()


@pytest.mark.parametrize("sets,message", [
    (["train_split=nosuchsplit"], "split 'nosuchsplit' has no questions (the store's splits: "),
    (["val_split=dev"], "split 'dev' has no questions"),
    pytest.param(["model.backend=mamba-ssm"], "model.backend: backend 'mamba-ssm' requested but "
                 "CUDA is not available; use --set model.backend=auto",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
    (["compile=true"], "compile = true needs amp = off"),          # amp = auto: bf16 on CUDA
    (["compile=true", "amp=bf16"], "compile = true needs amp = off"),
])
def test_a_run_that_cannot_start_is_refused_before_its_folder_exists(gen, tmp_path, sets, message):
    """Missing splits and a forced backend that cannot run: exit 2, the reason, no traceback,
    no run folder, and runs/latest untouched."""
    from typer.testing import CliRunner

    from cli import app

    out = tmp_path / "runs"
    good = train(tiny_cfg(gen.path, out, epochs=1, name="good"))
    args = ["train", "--store", str(gen.path), "--out", str(out), "--name", "bad", "--no-progress"]
    res = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)],
                             env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output, res.output
    assert not (out / "bad").exists()
    assert (out / "latest").resolve() == good.run_dir.resolve()


@pytest.mark.parametrize("device,message", [("gpu", "unknown device 'gpu'"),
                                            ("meta", "not supported")])
def test_a_device_that_does_not_exist_is_a_user_error(gen, tmp_path, device, message):
    from typer.testing import CliRunner

    from cli import app

    res = CliRunner().invoke(app, ["train", "--store", str(gen.path), "--out", str(tmp_path),
                                   "--device", device, "--no-progress"], env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output

