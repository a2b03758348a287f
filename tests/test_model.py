"""SHMamba on the CPU (mambapy backend): every variant, the per-video fast path, training signal,
state_dict identity, Mamba backend layout and the reference scan."""
from __future__ import annotations

import logging

import pytest
import torch

from model import (VARIANTS, SHMamba, SHMambaConfig, build_model, count_parameters, load_state,
                   resolve_backend, variant_config, variant_name)
from model.ssm import MambaLayer, MambaMixer

torch.set_num_threads(1)

SMALL = dict(audio_dim=16, visual_dim=24, text_dim=20, n_answers=7, d_model=32, n_layers=2,
             n_heads=4, curvature_hidden=16, backend="mambapy")
V, T, B = 3, 10, 5


def small(name: str, seed: int = 0, **kw) -> SHMamba:
    return build_model(name, seed=seed, **{**SMALL, **kw})


def batch(seed: int = 0, V: int = V, T: int = T, B: int = B, text_dim: int = 20):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(V, T, 16, generator=g)
    visual = torch.randn(V, T, 24, generator=g)
    question = torch.randn(B, text_dim, generator=g)
    index = torch.arange(B) % V  # questions share videos
    return audio, visual, question, index


# ------------------------------------------------------------------------------ shapes, fast path
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_shapes_and_shared_video_fast_path(name):
    model = small(name).eval()
    audio, visual, question, index = batch()
    with torch.no_grad():
        out = model(audio, visual, question, video_index=index)
        # slow reference: every question gets its own copy of its video
        ref = model(audio[index], visual[index], question)
    assert out.logits.shape == (B, 7)
    assert out.align_loss.shape == () and torch.isfinite(out.align_loss)
    if VARIANTS[name].get("geometry") == "euclidean":
        assert out.curvature is None and ref.curvature is None
    else:
        assert out.curvature.shape == (V,)
        torch.testing.assert_close(out.curvature[index], ref.curvature)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-5, atol=1e-5)
    if model.cfg.fusion == "cross":
        assert out.extra["attention"].shape == (B, 4, T)
        torch.testing.assert_close(out.extra["attention"].sum(-1), torch.ones(B, 4))
    assert model.variant == name and variant_name(model.cfg) == name


def test_float16_inputs_are_cast_inside():
    model = small("shmamba").eval()
    audio, visual, question, index = batch()
    a16, v16, q16 = audio.half(), visual.half(), question.half()
    with torch.no_grad():
        out16 = model(a16, v16, q16, video_index=index)
        out32 = model(a16.float(), v16.float(), q16.float(), video_index=index)
    assert out16.logits.dtype == torch.float32
    torch.testing.assert_close(out16.logits, out32.logits)


def test_multiple_choice_and_tokens():
    model = small("shmamba", n_options=4, use_tokens=True).eval()
    audio, visual, question, index = batch()
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(B, 6, 20, generator=g)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 3, 1, 4, 2])[:, None]
    options = torch.randn(B, 4, 20, generator=g)
    with torch.no_grad():
        out = model(audio, visual, question, tokens=tokens, token_mask=mask, video_index=index,
                    options=options)
        # padded tokens do not matter
        noisy = tokens.masked_fill(~mask[..., None], 1e4)
        out2 = model(audio, visual, question, tokens=noisy, token_mask=mask, video_index=index,
                     options=options)
    assert out.logits.shape == (B, 4) and out.extra["answer_logits"].shape == (B, 7)
    torch.testing.assert_close(out.logits, out2.logits)
    with pytest.raises(ValueError, match="tokens"):
        model(audio, visual, question, video_index=index, options=options)


def test_clear_errors_for_bad_inputs():
    model = small("shmamba")
    audio, visual, question, index = batch()
    with pytest.raises(ValueError, match=r"audio must be \[V, T, 16\]"):
        model(audio[..., :8], visual, question, video_index=index)
    with pytest.raises(ValueError, match="visual"):
        model(audio, visual[..., :5], question, video_index=index)
    with pytest.raises(ValueError, match="one video per question"):
        model(audio, visual, question)
    with pytest.raises(ValueError, match=r"video_index values must lie in \[0, 3\)"):
        model(audio, visual, question, video_index=index + 1)
    with pytest.raises(ValueError, match="n_options is 0"):
        model(audio, visual, question, video_index=index, options=torch.randn(B, 4, 20))
    with pytest.raises(ValueError, match="same number of videos"):
        model(audio, visual[:, :5], question, video_index=index)


def test_config_rejects_bad_values_and_unknown_variants():
    with pytest.raises(ValueError, match="geometry"):
        SHMambaConfig(geometry="spherical")
    with pytest.raises(ValueError, match="divisible"):
        SHMambaConfig(d_model=30, n_heads=8)
    with pytest.raises(ValueError, match="sqrt\\(k0\\) \\* clip_radius"):
        SHMambaConfig(k0=4.0, clip_radius=2.0)
    with pytest.raises(ValueError, match="known variants.*shmamba"):
        variant_config("mamba-xl")
    with pytest.raises(ValueError, match="unknown SHMambaConfig field"):
        variant_config("shmamba", d_modle=3)


# ------------------------------------------------------------------------------ training signal
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_gradients_reach_every_parameter(name):
    model = small(name).train()
    audio, visual, question, index = batch()
    out = model(audio, visual, question, video_index=index)
    target = torch.arange(B) % 7
    (torch.nn.functional.cross_entropy(out.logits, target) + out.align_loss).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero


def test_gradients_reach_multiple_choice_and_token_parameters():
    model = small("shmamba", n_options=3, n_answers=0, use_tokens=True).train()
    audio, visual, question, index = batch()
    g = torch.Generator().manual_seed(1)
    out = model(audio, visual, question, tokens=torch.randn(B, 4, 20, generator=g),
                video_index=index, options=torch.randn(B, 3, 20, generator=g))
    assert out.logits.shape == (B, 3) and model.classifier is None
    (torch.nn.functional.cross_entropy(out.logits, torch.arange(B) % 3) + out.align_loss).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_adam_steps_lower_the_loss_on_a_fixed_batch():
    model = small("shmamba", dropout=0.0).train()
    audio, visual, question, index = batch(seed=3, V=4, B=8)
    target = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(audio, visual, question, video_index=index)
        loss = torch.nn.functional.cross_entropy(out.logits, target) + 0.1 * out.align_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_seeded_construction_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = small("shmamba", seed=7).state_dict()
    after = torch.rand(1)
    assert torch.equal(before, after)  # build_model(seed=...) forks the RNG
    b = small("shmamba", seed=7).state_dict()
    c = small("shmamba", seed=8).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


# ------------------------------------------------------------------------------ state_dict identity
def test_state_dict_loads_only_into_the_same_variant():
    names = sorted(VARIANTS)
    models = {n: small(n, seed=1) for n in names}
    states = {n: small(n, seed=2).state_dict() for n in names}
    for target in names:
        for source in names:
            if source == target:
                continue
            with pytest.raises(ValueError, match=f"variant '{source}'.*variant '{target}'"):
                load_state(models[target], states[source])
            with pytest.raises((ValueError, RuntimeError)):
                models[target].load_state_dict(states[source])
    # same variant: loads, and the outputs follow the weights
    audio, visual, question, index = batch()
    for n in names:
        fresh = small(n, seed=1).eval()
        load_state(fresh, states[n], variant=n)
        twin = small(n, seed=2).eval()
        with torch.no_grad():
            torch.testing.assert_close(fresh(audio, visual, question, video_index=index).logits,
                                       twin(audio, visual, question, video_index=index).logits)


def test_load_state_names_variant_keys_and_fields():
    model = small("shmamba")
    with pytest.raises(ValueError, match="checkpoint variant 'euclidean' does not match the model "
                                         "variant 'shmamba'"):
        load_state(model, small("shmamba").state_dict(), variant="euclidean")
    # euclidean and fixed-curvature have the same keys and shapes: the arch record tells them apart
    euc, fixed = small("euclidean").state_dict(), small("fixed-curvature").state_dict()
    assert {k: v.shape for k, v in euc.items() if k != "arch_spec"} == \
           {k: v.shape for k, v in fixed.items() if k != "arch_spec"}
    with pytest.raises(ValueError, match="geometry: 'euclidean' \\(state_dict\\) vs 'hyperbolic'"):
        small("fixed-curvature").load_state_dict(euc)
    # same variant, other dims
    with pytest.raises(ValueError, match="d_model: 64 \\(state_dict\\) vs 32"):
        load_state(model, small("shmamba", d_model=64).state_dict())
    # no arch record (a foreign state_dict): keys are named
    foreign = {k: v for k, v in small("transformer").state_dict().items() if k != "arch_spec"}
    with pytest.raises(ValueError, match="missing keys.*temporal.stack.layers.0.mixer"):
        load_state(model, foreign)
    # runtime fields (backend, dropout, temperature) do not block loading
    load_state(small("shmamba", dropout=0.0, align_temperature=0.5), model.state_dict())


# ------------------------------------------------------------------------------ Mamba backend
def test_backend_choice_is_reported(caplog):
    if not torch.cuda.is_available():
        assert resolve_backend("auto") == ("mambapy", "auto: CUDA not available")
        for forced in ("mamba-ssm", "triton"):
            with pytest.raises(RuntimeError, match="CUDA is not available"):
                resolve_backend(forced)
    with caplog.at_level(logging.INFO, logger="model.shmamba"):
        model = build_model("shmamba", **{**SMALL, "backend": "mambapy"})
    assert "Mamba backend mambapy" in caplog.text
    info = model.describe()
    assert info["backend"] == "mambapy" and info["variant"] == "shmamba"
    assert info["parameters"] == count_parameters(model)
    assert build_model("transformer", **SMALL).describe()["backend"] is None
    with pytest.raises(ValueError, match="unknown Mamba backend"):
        resolve_backend("cuda")


def test_mamba_mixer_has_the_mamba_ssm_parameter_layout():
    """mamba_ssm.Mamba(d_model, d_state, d_conv, expand) holds exactly these names and shapes."""
    d, n, k, e = 32, 8, 4, 2
    mixer = MambaMixer(d, n, k, e, backend="mambapy")
    di, r = e * d, -(-d // 16)
    want = {"mixer.in_proj.weight": (2 * di, d), "mixer.conv1d.weight": (di, 1, k),
            "mixer.conv1d.bias": (di,), "mixer.x_proj.weight": (r + 2 * n, di),
            "mixer.dt_proj.weight": (di, r), "mixer.dt_proj.bias": (di,), "mixer.A_log": (di, n),
            "mixer.D": (di,), "mixer.out_proj.weight": (d, di)}
    assert {k: tuple(v.shape) for k, v in mixer.state_dict().items()} == want


@pytest.mark.parametrize("T", [60, 7, 1])
def test_mambapy_parallel_scan_matches_sequential_reference(T):
    """mambapy pads T to a power of two for its parallel scan; check T = 60 (the store's T)."""
    torch.manual_seed(0)
    layer = MambaLayer(16, d_state=8, d_conv=4, expand=2, backend="mambapy")
    x = torch.randn(3, T, 16, requires_grad=True)
    outs, grads = [], []
    for pscan in (True, False):
        layer.mixer.mixer.config.pscan = pscan
        layer.zero_grad()
        x.grad = None
        y = layer(x)
        (y * torch.linspace(-1, 1, T)[None, :, None]).sum().backward()
        outs.append(y.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in layer.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for g_fast, g_ref in zip(*grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5)


def test_full_model_no_nan_for_inputs_of_norm_1e3():
    model = small("shmamba").train()
    audio, visual, question, index = batch()

    def big(t):
        return (1e3 * t / t.norm(dim=-1, keepdim=True)).requires_grad_()

    audio, visual, question = big(audio), big(visual), big(question)
    out = model(audio, visual, question, video_index=index)
    (out.logits.logsumexp(-1).sum() + out.align_loss).backward()
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.align_loss)
    for t in [audio.grad, visual.grad, question.grad, *(p.grad for p in model.parameters())]:
        assert torch.isfinite(t).all()


def test_count_parameters_per_component():
    model = small("per-modality-mamba", n_options=4)
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert {"audio_enc", "visual_enc", "question_enc", "align", "temporal", "fusion", "head",
            "classifier", "option_enc"} <= counts.keys()
    assert counts["audio_enc"] == 16 * 32 + 32
    # shared weights: one stack; per-modality: two
    shared = count_parameters(small("shmamba", n_options=4))
    assert counts["temporal"] == 2 * shared["temporal"]
    assert "align" not in count_parameters(small("fixed-curvature"))


def test_cli_model_command_prints_parameter_table():
    from typer.testing import CliRunner

    import cli

    runner = CliRunner()
    result = runner.invoke(cli.app, ["model", "--variant", "euclidean", "--d-model", "32",
                                     "--layers", "1", "--answers", "5"])
    assert result.exit_code == 0, result.output
    model = build_model("euclidean", d_model=32, n_layers=1, n_answers=5)
    total = count_parameters(model)["total"]
    assert "euclidean" in result.output and f"{total:,}" in result.output
    result = runner.invoke(cli.app, ["model", "--all", "--d-model", "32", "--layers", "1"])
    assert result.exit_code == 0, result.output
    assert all(n in result.output for n in VARIANTS)
    result = runner.invoke(cli.app, ["model", "--variant", "nope"])
    assert result.exit_code != 0 and "known variants" in result.output


def test_an_arch_record_that_spells_out_a_later_field_at_its_default_still_loads():
    """A field added later (features) is left out of arch_spec at its default; a record that
    spells it out (other buffer size) is the same architecture, and another value is refused."""
    import json

    from model.shmamba import ARCH_KEY

    state = small("shmamba").state_dict()
    record = json.loads(bytes(state[ARCH_KEY].tolist()).decode())
    assert "features" not in record
    for value, loads in (("tangent", True), ("ball", False)):
        spelled = dict(state)
        spelled[ARCH_KEY] = torch.tensor(list(json.dumps({**record, "features": value}).encode()),
                                         dtype=torch.uint8)
        if loads:
            small("shmamba").load_state_dict(spelled)
            load_state(small("shmamba"), spelled)
        else:
            with pytest.raises(ValueError, match="features: 'ball'"):
                small("shmamba").load_state_dict(spelled)
