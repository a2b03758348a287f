"""The CUDA-graph training step and graphed predictions against the eager reference, on a real
(small, random) store on the GPU.  Skips without CUDA.

    source .whl/remote_setup.sh && python3 -m pytest -q -s tests/gpu/test_gpu_step.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parents[1]))
from storegen import make_store  # noqa: E402

from model import build_model  # noqa: E402
from store.reader import FeatureStore  # noqa: E402
from train import StoreData, load_train_config, prepare_config, read_metrics, train  # noqa: E402
from train.data import batch_indices, epoch_order, store_dims  # noqa: E402
from train.loop import model_config_for  # noqa: E402
from train.optim import make_optimizers, make_schedulers  # noqa: E402
from train.predict import Predictor  # noqa: E402
from train.step import (EagerStep, GraphStep, StepSettings, graph_autocast, pack_plans,  # noqa: E402
                        plans_shape)

DEV = torch.device("cuda")
STEPS, BATCH = 12, 32


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("gpu") / "feats.h5", n_videos=160, T=60,
                      visual_dim=512, text_dim=512, seed=11, keep_arrays=False)


@pytest.fixture(scope="module")
def data(store_path):
    return StoreData(FeatureStore(str(store_path)), ["train", "val"], DEV, with_tokens=False)


@pytest.fixture()
def exact_fp32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def setup(data, amp):
    cfg = load_train_config(None, {"store": "x", "lr": 1e-3, "amp": amp})
    model = build_model(model_config_for("shmamba", {"dropout": 0.0}, store_dims(data.store)),
                        seed=0).to(DEV)
    opts = make_optimizers(model, cfg)
    scheds, _ = make_schedulers(opts, cfg, 100)
    return model, opts, scheds, graph_autocast(DEV, amp), StepSettings(0.1, 1.0, 0.0)


def run_steps(data, amp, graph: bool, compile: bool | str = False):
    model, opts, scheds, autocast, settings = setup(data, amp)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    order = epoch_order(len(data.splits["train"]), torch.Generator().manual_seed(0))
    idx = [b.numpy() for b in batch_indices(order, BATCH)][:STEPS]
    answers = data.splits["train"].answer
    scales = [(1.0 / max(1, int((answers[i] >= 0).sum())), 1.0) for i in idx]
    losses = []
    if graph:
        warnings = []
        step = GraphStep(model, opts, scheds, settings, autocast, data, "train", compile=compile,
                         warn=warnings.append)
        plans_np = [data.plan("train", i) for i in idx]
        shape = step.prepare(plans_shape(plans_np, BATCH))
        plans = torch.from_numpy(pack_plans(plans_np, shape)).to(DEV)
        dev_scales = torch.tensor(scales, dtype=torch.float32, device=DEV)
        for k in range(len(idx)):
            before = step.acc.clone()
            step(plans[k], dev_scales[k])
            losses.append((step.acc - before).cpu())
        assert step.graph is not None, "the step was never captured"
        assert not warnings, warnings  # compiled as asked, no fallback
    else:
        step = EagerStep(model, model, opts, scheds, settings, autocast, DEV)
        for k, batch in enumerate(data.batches("train", idx)):
            before = step.acc.clone()
            step(batch, *scales[k])
            losses.append((step.acc - before).cpu())
    torch.cuda.synchronize()
    delta = {n: (p.detach() - start[n]) for n, p in model.named_parameters()}
    return torch.stack(losses), delta


# no ("bf16", True): under bf16 autocast the whole compiled model is wrong from its second call
# on (torch 2.11 on the H200; TrainConfig refuses it; benchmarks/compile_check.py shows it), where
# its regions compiled one by one agree (run e)
@pytest.mark.parametrize("amp,compile", [("off", False), ("bf16", False), ("off", True),
                                         ("bf16", "regions")])
def test_graph_step_gives_the_eager_steps_losses_and_weights(data, amp, compile, exact_fp32):
    eager_losses, eager_delta = run_steps(data, amp, graph=False)
    graph_losses, graph_delta = run_steps(data, amp, graph=True, compile=compile)
    # [CE sum, answered, correct, align * videos] per step
    assert torch.equal(graph_losses[:, 1], eager_losses[:, 1])  # the same questions answered
    ce_rel = ((graph_losses[:, 0] - eager_losses[:, 0]).abs() / eager_losses[:, 0]).max().item()
    al_rel = ((graph_losses[:, 3] - eager_losses[:, 3]).abs() / eager_losses[:, 3]).max().item()
    num = sum(float((graph_delta[n] - eager_delta[n]).norm() ** 2) for n in eager_delta) ** 0.5
    den = sum(float(eager_delta[n].norm() ** 2) for n in eager_delta) ** 0.5
    print(f"\n[{amp}{', compiled ' + str(compile) if compile else ''}] {STEPS} steps: CE max rel diff {ce_rel:.2e}, align max rel diff {al_rel:.2e}, "
          f"weight update rel diff {num / den:.2e}")
    tol = 1e-4 if amp == "off" else 2e-2
    assert ce_rel <= tol and al_rel <= tol
    assert num / den <= (1e-3 if amp == "off" else 5e-2)


def test_graphed_predictions_equal_eager_predictions(data, exact_fp32):
    model = build_model(model_config_for("shmamba", {}, store_dims(data.store)), seed=1).to(DEV)
    eager = Predictor(model, data, 48, amp="off", graphs=False)("val")
    predictor = Predictor(model, data, 48, amp="off", graphs=True)
    graphed = predictor("val")
    again = predictor("val")  # replays the captured graph
    agree = float(np.mean(graphed.pred == eager.pred))
    print(f"\npredictions agree on {100 * agree:.2f} % of {len(eager.pred)} questions")
    assert agree >= 0.99
    assert np.array_equal(graphed.video_local, eager.video_local)
    np.testing.assert_allclose(graphed.curvature, eager.curvature, rtol=1e-4)
    assert np.array_equal(again.pred, graphed.pred)


# compile "auto" (the default) leaves this short run uncompiled; "regions" is what a default
# run of >= AUTO_COMPILE_STEPS steps compiles: it must resume too (compiled again on resume)
@pytest.mark.parametrize("compile,words", [("auto", ", auto: fewer than"),
                                           ("regions", "torch.compile (regions: ")])
def test_train_command_runs_the_graph_step_and_resumes(store_path, tmp_path, compile, words):
    cfg = load_train_config(None, {"store": str(store_path), "out": str(tmp_path), "name": "r",
                                   "epochs": 3, "batch_size": 16, "progress": False,
                                   "stop_after": 2, "compile": compile})
    first = train(cfg)
    assert first.stopped == "stop_after"
    log = (tmp_path / "r" / "train.log").read_text()
    assert "training step: CUDA graph" in log and words in log
    assert "torch.compile failed" not in log
    cfg2, run_dir = prepare_config(None, {"progress": False}, resume=str(tmp_path / "r"))
    result = train(cfg2, resume=str(run_dir))
    rows = read_metrics(tmp_path / "r")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and result.epochs_done == 3
    assert all(np.isfinite(r["train_loss"]) and r["val_overall"] is not None for r in rows)


@pytest.mark.parametrize("variant,backend", [
    ("shmamba", "auto"), ("euclidean", "auto"), ("fixed-curvature", "auto"), ("transformer", "auto"),
    ("no-temporal", "auto"), ("concat-fusion", "auto"), ("per-modality-mamba", "auto"),
    ("shmamba", "mambapy")])
def test_every_variant_runs_the_graph_step_and_graphed_predictions(data, variant, backend):
    from model import VARIANTS

    assert variant in VARIANTS
    cfg = load_train_config(None, {"store": "x", "lr": 1e-3})
    model = build_model(model_config_for(variant, {"backend": backend}, store_dims(data.store)),
                        seed=0).to(DEV)
    opts = make_optimizers(model, cfg)
    scheds, _ = make_schedulers(opts, cfg, 100)
    step = GraphStep(model, opts, scheds, StepSettings(0.1, 1.0, 0.0), graph_autocast(DEV, "auto"),
                     data, "train")
    order = epoch_order(len(data.splits["train"]), torch.Generator().manual_seed(1))
    idx = [b.numpy() for b in batch_indices(order, 16)][:6]
    plans_np = [data.plan("train", i) for i in idx]
    plans = torch.from_numpy(pack_plans(plans_np, step.prepare(plans_shape(plans_np, 16)))).to(DEV)
    for k in range(len(idx)):
        step(plans[k], torch.tensor([1 / 16, 1.0], device=DEV))
    assert step.graph is not None and torch.isfinite(step.acc).all()
    eager = Predictor(model, data, 32, graphs=False)("val")
    graphed = Predictor(model, data, 32, graphs=True)("val")
    assert len(graphed.pred) == len(eager.pred) and np.mean(graphed.pred == eager.pred) >= 0.95


def test_a_failing_compile_falls_back_to_the_plain_model_with_a_warning(data):
    def broken_backend(gm, example_inputs):  # a torch.compile backend that cannot compile
        raise RuntimeError("no compiler here")

    model, opts, scheds, autocast, settings = setup(data, "bf16")
    warnings = []
    step = GraphStep(model, opts, scheds, settings, autocast, data, "train", compile=True,
                     warn=warnings.append)
    step.run_model = torch.compile(model, backend=broken_backend)
    idx = [b.numpy() for b in batch_indices(torch.arange(64), 16)]
    plans_np = [data.plan("train", i) for i in idx]
    plans = torch.from_numpy(pack_plans(plans_np, step.prepare(plans_shape(plans_np, 16)))).to(DEV)
    for k in range(len(idx)):
        step(plans[k], torch.tensor([1 / 16, 1.0], device=DEV))
    assert len(warnings) == 1 and "no compiler here" in warnings[0], warnings
    assert step.run_model is model and step.graph is not None and torch.isfinite(step.acc).all()
