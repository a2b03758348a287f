"""SHMamba on the GPU: the fast Mamba backends (our Triton scan, mamba-ssm) against the mambapy
reference, bf16 autocast.

Skips without CUDA; the mamba-ssm cases skip without an importable mamba_ssm.  On the GPU machine, from the project root:

    source .whl/remote_setup.sh && python3 -m pytest -q -s tests/gpu/test_gpu_model.py

(``-s`` shows the measured differences, printed for the record.)
"""
from __future__ import annotations

import pytest
import torch

from model import VARIANTS, build_model, count_parameters

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)
try:
    import mamba_ssm  # noqa: F401
    NO_MAMBA_SSM = None
except Exception as exc:  # ImportError or a broken extension build
    NO_MAMBA_SSM = f"needs mamba_ssm ({type(exc).__name__}: {exc})"
FAST = ["triton", pytest.param("mamba-ssm", marks=pytest.mark.skipif(NO_MAMBA_SSM is not None,
                                                                      reason=str(NO_MAMBA_SSM)))]

DEV = torch.device("cuda")
DIMS = dict(audio_dim=128, visual_dim=512, text_dim=512, n_answers=42, d_model=256, n_layers=4)
V, T, B = 16, 60, 64  # 4 questions per video, the store's T = 60 (not a power of two)


@pytest.fixture(autouse=True)
def exact_fp32():
    """Compare in true fp32: no TF32 in matmuls or cuDNN convolutions."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def batch(seed: int = 0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    audio = torch.randn(V, T, 128, device=DEV, generator=g).half()  # the store's float16
    visual = torch.randn(V, T, 512, device=DEV, generator=g).half()
    question = torch.randn(B, 512, device=DEV, generator=g).half()
    index = torch.arange(B, device=DEV) % V
    return audio, visual, question, index


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def twins(name: str, backend: str = "mamba-ssm"):
    """The same weights on two backends: a fast one (mamba-ssm or our triton scan) and mambapy
    (the reference)."""
    fast = build_model(name, seed=0, backend=backend, **DIMS).to(DEV)
    ref = build_model(name, seed=1, backend="mambapy", **DIMS).to(DEV)
    ref.load_state_dict(fast.state_dict())  # identical parameter layout: loads strictly
    assert fast.describe()["backend"] == backend and ref.describe()["backend"] == "mambapy"
    return fast, ref


def test_auto_backend_picks_triton_and_rejects_cpu_tensors():
    model = build_model("shmamba", **DIMS)
    assert model.backend == "triton", model.backend_reason
    audio, visual, question, index = batch()
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        model(audio.cpu(), visual.cpu(), question.cpu(), video_index=index.cpu())


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("name", ["shmamba", "per-modality-mamba"])
def test_fast_backend_matches_mambapy_same_weights(name, backend):
    fast, ref = twins(name, backend)
    fast.eval(), ref.eval()
    audio, visual, question, index = batch()
    with torch.no_grad():
        out_f = fast(audio, visual, question, video_index=index)
        out_r = ref(audio, visual, question, video_index=index)
    r_logits = rel(out_f.logits, out_r.logits)
    r_align = rel(out_f.align_loss, out_r.align_loss)
    print(f"\n{name} {backend}: logits rel err {r_logits:.2e}, align_loss rel err {r_align:.2e}")
    assert r_logits <= 1e-3
    assert r_align <= 1e-3
    torch.testing.assert_close(out_f.curvature, out_r.curvature)


@pytest.mark.parametrize("backend", FAST)
def test_fast_backend_gradients_match_mambapy(backend):
    fast, ref = twins("shmamba", backend)
    fast.train(), ref.train()
    for m in (fast, ref):
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    audio, visual, question, index = batch(1)
    target = torch.arange(B, device=DEV) % 42
    for m in (fast, ref):
        out = m(audio, visual, question, video_index=index)
        (torch.nn.functional.cross_entropy(out.logits, target) + out.align_loss).backward()
    pairs = [(n, pf.grad, pr.grad) for (n, pf), pr in zip(fast.named_parameters(), ref.parameters())]
    overall = rel(torch.cat([f.flatten() for _, f, _ in pairs]), torch.cat([r.flatten() for _, _, r in pairs]))
    worst = max((rel(f, r), n) for n, f, r in pairs)
    print(f"\n{backend}: all gradients rel err {overall:.2e}; worst parameter {worst[1]}: {worst[0]:.2e}")
    assert overall <= 1e-3
    assert worst[0] <= 1e-2


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_bf16_autocast_forward_backward_finite(name):
    model = build_model(name, seed=0, **DIMS).to(DEV).train()
    audio, visual, question, index = batch(2)
    target = torch.arange(B, device=DEV) % 42
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(audio, visual, question, video_index=index)
        loss = torch.nn.functional.cross_entropy(out.logits.float(), target) + 0.1 * out.align_loss
    assert out.align_loss.dtype == torch.float32  # hyperbolic math stays fp32 under autocast
    loss.backward()
    assert torch.isfinite(loss)
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad
    # close to the fp32 forward of the same weights
    model.eval()
    with torch.no_grad():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            lo = model(audio, visual, question, video_index=index).logits
        hi = model(audio, visual, question, video_index=index).logits
    print(f"\n{name}: bf16 vs fp32 logits rel err {rel(lo, hi):.2e}, "
          f"{count_parameters(model)['total']:,} parameters, backend {model.backend}")
    assert rel(lo, hi) < 5e-2


def test_shared_video_fast_path_on_gpu():
    model = build_model("shmamba", seed=0, **DIMS).to(DEV).eval()
    audio, visual, question, index = batch(3)
    with torch.no_grad():
        out = model(audio, visual, question, video_index=index)
        ref = model(audio[index], visual[index], question)
    assert rel(out.logits, ref.logits) <= 1e-5
