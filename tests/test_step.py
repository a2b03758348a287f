"""The static-shape (padded) batch that the CUDA-graph step replays, checked on the CPU against
the eager step on the unpadded batch: same logits, losses, gradients and predictions.  The graph
capture itself is checked on the GPU (tests/gpu/test_gpu_step.py)."""
from __future__ import annotations

import sys
from operator import attrgetter
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from storegen import make_store  # noqa: E402

from model import build_model  # noqa: E402
from train import StoreData  # noqa: E402
from train.loop import model_config_for  # noqa: E402
from train.data import store_dims  # noqa: E402
from train.predict import Predictor  # noqa: E402
from train.step import (COMPILE_REGIONS, StaticShape, StepSettings, compiled_model, forward,  # noqa: E402
                        gather_static, loss_and_metrics, pack_plans, plans_shape)
from store.reader import FeatureStore  # noqa: E402

torch.set_num_threads(1)
TINY = {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2, "curvature_hidden": 8,
        "dropout": 0.0}
SETTINGS = StepSettings(align_weight=0.1, grad_clip=0.0, label_smoothing=0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = make_store(tmp_path_factory.mktemp("store") / "feats.h5", seed=5, keep_arrays=False)
    store = FeatureStore(str(path))
    return StoreData(store, ["train", "val"], "cpu", with_tokens=False)


def model_for(data, seed=0):
    cfg = model_config_for("shmamba", TINY, store_dims(data.store))
    return build_model(cfg, seed=seed)


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_plans_pad_questions_and_videos_and_mark_them_invalid(data):
    positions = [np.array([3, 0, 7, 7 - 1]), np.array([1, 2])]
    plans = [data.plan("train", p) for p in positions]
    shape = plans_shape(plans, 8, multiple=4)
    assert shape == StaticShape(8, 4)
    packed = pack_plans(plans, shape)
    assert packed.shape == (2, 3 * 8 + 2 * 4)
    q, v = packed[1, :24].reshape(3, 8), packed[1, 24:].reshape(2, 4)
    assert q[0, :2].tolist() == [1, 2] and set(q[0, 2:]) == {1}
    assert q[2].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert v[1].tolist() == [1] * len(plans[1]["videos"]) + [0] * (4 - len(plans[1]["videos"]))
    with pytest.raises(ValueError, match="does not fit"):
        pack_plans(plans, StaticShape(1, 4))


@pytest.mark.parametrize("n", [5, 12])
def test_padded_step_equals_the_unpadded_eager_step(data, n):
    """Forward, losses, running sums and every gradient of the padded batch equal the unpadded
    batch's (a partial batch n=5, and a batch with shared videos n=12)."""
    positions = np.arange(n) * 2 % len(data.splits["train"])
    ref_model, pad_model = model_for(data), model_for(data)
    scales = torch.tensor([1.0 / n, 1.0])

    batch = data.batch("train", positions)
    out = forward(ref_model, batch)
    loss, metrics = loss_and_metrics(out, batch.answer, float(len(batch.videos)), scales, SETTINGS)
    loss.backward()

    plan = data.plan("train", positions)
    shape = StaticShape(16, 16)
    row = torch.from_numpy(pack_plans([plan], shape)[0])
    padded, video_mask = gather_static(data, "train", row, shape)
    assert padded.audio.shape[0] == 16 and int(video_mask.sum()) == len(plan["videos"])
    pout = forward(pad_model, padded, video_mask)
    ploss, pmetrics = loss_and_metrics(pout, padded.answer, video_mask.sum().double(), scales, SETTINGS)
    ploss.backward()

    torch.testing.assert_close(pout.logits[:n], out.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pout.align_loss, out.align_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pout.curvature[:len(plan["videos"])], out.curvature)
    torch.testing.assert_close(pmetrics, metrics, rtol=1e-6, atol=1e-6)
    g_ref, g_pad = grads(ref_model), grads(pad_model)
    assert g_ref.keys() == g_pad.keys()
    for name in g_ref:
        torch.testing.assert_close(g_pad[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_compiled_regions_run_compiled_on_the_models_own_parameters(data):
    """compile = "regions": a view whose COMPILE_REGIONS go through torch.compile (each region
    reaches the backend), training the model's own parameters with its gradients; the model
    itself, its children and its state_dict keys stay as they were."""
    model, graphs = model_for(data), []

    def backend(gm, inputs):  # records what was compiled, runs it as traced
        graphs.append(gm)
        return gm.forward

    view = compiled_model(model, "regions", backend=backend)
    batch = data.batch("train", np.arange(6))
    for m in (model, view):
        out = forward(m, batch)
        loss = loss_and_metrics(out, batch.answer, float(len(batch.videos)), torch.tensor([1 / 6, 1.0]),
                                SETTINGS)[0]
        loss.backward()
        if m is model:
            ref, _ = grads(model), model.zero_grad()
    assert len(graphs) >= len(COMPILE_REGIONS)
    assert all(attrgetter(n)(view) is not attrgetter(n)(model) for n in COMPILE_REGIONS)
    children = {n.split(".")[0] for n in COMPILE_REGIONS}
    assert "fusion" in children  # called through its methods: compiled as a view of its own
    assert all(isinstance(getattr(model, n), torch.nn.Module) and getattr(model, n).training
               for n in children)
    assert list(view.state_dict()) == list(model.state_dict())
    got = grads(model)
    assert got.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="'model' or 'regions'"):
        compiled_model(model, "parts")


def test_predictor_padded_path_equals_eager_batches(data):
    model = model_for(data, seed=2).eval()
    eager = Predictor(model, data, batch_size=7, amp="off", graphs=False)("val")
    # the padded static batches without a CUDA graph: GraphForward's _forward on the CPU
    from train.predict import GraphForward

    plans_np = [data.plan("val", b.numpy()) for b in torch.split(torch.arange(len(data.splits["val"])), 7)]
    shape = plans_shape(plans_np, 7)
    runner = GraphForward(model, data, "val", shape, lambda: torch.autocast("cpu", enabled=False))
    preds = []
    with torch.no_grad():
        for row, p in zip(torch.from_numpy(pack_plans(plans_np, shape)), plans_np):
            runner.plan.copy_(row)
            pred, _ = runner._forward()
            preds.append(pred[:len(p["index"])])
    assert np.array_equal(torch.cat(preds).numpy(), eager.pred)
