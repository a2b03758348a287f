"""Hyperbolic alignment: maps, per-video curvature broadcasting, the loss, numerical safety."""
from __future__ import annotations

import pytest
import torch
from geoopt.manifolds.stereographic import math as pmath

from model.hyperbolic import (BALL_EPS, Alignment, CurvatureHead, alignment_loss, clip_tangent,
                              expmap0, logmap0, pairwise_distance, pairwise_distance_reference,
                              project)

torch.set_num_threads(1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_expmap0_logmap0_round_trip_per_video_curvature():
    g = _gen(0)
    u = clip_tangent(torch.randn(5, 7, 16, generator=g) * 3, radius=2.0)
    c = torch.tensor([0.01, 0.2, 0.5, 1.0, 2.0])  # sqrt(c) * 2.0 <= 3: never at the boundary
    x = expmap0(u, c)
    assert x.dtype == torch.float32
    # every point lies strictly inside its own video's ball of radius 1/sqrt(c)
    assert (x.norm(dim=-1) < (1.0 / c.sqrt())[:, None]).all()
    torch.testing.assert_close(logmap0(x, c), u, rtol=1e-4, atol=1e-5)
    # far out (sqrt(c)*|u| = 20): projected strictly inside the ball, finite on the way back
    far = expmap0(u / u.norm(dim=-1, keepdim=True) * 20.0, torch.ones(5))
    assert (far.norm(dim=-1) < 1.0).all() and torch.isfinite(logmap0(far, torch.ones(5))).all()


def test_per_video_curvature_matches_one_video_at_a_time():
    """The broadcast path (k of shape [V, 1, 1]) against a loop with one scalar curvature."""
    g = _gen(1)
    u = clip_tangent(torch.randn(4, 6, 8, generator=g), 2.0)
    c = torch.tensor([0.1, 0.4, 0.7, 0.95])
    fast = expmap0(u, c)
    for i in range(4):
        k = torch.tensor(-float(c[i]))
        ref = pmath.project(pmath.expmap0(u[i], k=k), k=k)
        torch.testing.assert_close(fast[i], ref)


def test_pairwise_distance_reference_matches_pair_by_pair_geoopt():
    """The broadcast geoopt reference against one geoopt call per pair (scalar curvature)."""
    g = _gen(2)
    a = clip_tangent(torch.randn(5, 8, generator=g), 2.0)
    v = clip_tangent(torch.randn(5, 8, generator=g), 2.0)
    c = torch.tensor([0.05, 0.3, 0.6, 0.9, 0.99])
    ref = pairwise_distance_reference(a, v, c)
    assert ref.shape == (5, 5)
    loop = torch.empty(5, 5)
    for i in range(5):
        k = torch.tensor(-float(c[i]))  # row i: the anchor video's curvature
        for j in range(5):
            loop[i, j] = pmath.dist(pmath.expmap0(a[i], k=k), pmath.expmap0(v[j], k=k), k=k)
    torch.testing.assert_close(ref, loop, rtol=1e-4, atol=1e-5)
    # Euclidean: 2 * ||a_i - v_j||, the c -> 0 limit of the hyperbolic distance
    torch.testing.assert_close(pairwise_distance_reference(a, v, None), 2 * torch.cdist(a, v),
                               rtol=1e-5, atol=1e-5)
    near_flat = pairwise_distance_reference(a, v, torch.full((5,), 1e-6))
    torch.testing.assert_close(near_flat, 2 * torch.cdist(a, v), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("case", ["random", "near-identical", "boundary", "tiny", "euclidean"])
def test_pairwise_distance_fast_path_matches_geoopt_reference(case):
    """Closed form from radii and cosines (fast) against geoopt broadcast (reference): values
    and gradients."""
    g = _gen(4)
    V, d = 6, 12
    a = clip_tangent(torch.randn(V, d, generator=g), 2.0)
    v = clip_tangent(torch.randn(V, d, generator=g), 2.0)
    c = torch.linspace(0.05, 1.0, V)
    if case == "near-identical":
        v = a + 1e-3 * torch.randn(V, d, generator=g)
    elif case == "boundary":  # sqrt(c)|u| = 5: both sides project onto (1 - 4e-3) / sqrt(c)
        a, v, c = 5.0 * a / a.norm(dim=-1, keepdim=True), 5.0 * v / v.norm(dim=-1, keepdim=True), torch.ones(V)
    elif case == "tiny":
        a, v = 1e-4 * a, 1e-4 * v
    elif case == "euclidean":
        c = None
    results = []
    for fn in (pairwise_distance, lambda *args: pairwise_distance_reference(*args, dtype=torch.float64)):
        a_, v_ = a.clone().requires_grad_(), v.clone().requires_grad_()
        c_ = None if c is None else c.clone().requires_grad_()
        dist = fn(a_, v_, c_)
        assert dist.shape == (V, V)
        (dist * torch.linspace(0.5, 1.5, V * V).view(V, V)).sum().backward()
        results.append((dist.detach().float(), a_.grad, v_.grad, None if c is None else c_.grad))
    (fast, *gf), (ref, *gr) = results
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    for x, y in zip(gf, gr):
        if x is not None:
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    # the float32 reference (what geoopt gives in float32) is close too
    torch.testing.assert_close(pairwise_distance_reference(a, v, c), ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("hyperbolic", [True, False])
def test_pairwise_distance_batched_equals_one_call_per_slice(hyperbolic):
    """Both directions of the alignment loss go through one batched call: [2, V, d] pairs."""
    g = _gen(5)
    a, v = (clip_tangent(torch.randn(2, 6, 8, generator=g), 2.0) for _ in range(2))
    c = torch.linspace(0.1, 0.9, 6) if hyperbolic else None
    both = pairwise_distance(a, v, c)
    assert both.shape == (2, 6, 6)
    for i in range(2):
        torch.testing.assert_close(both[i], pairwise_distance(a[i], v[i], c), rtol=1e-6, atol=1e-7)


def test_curvature_stays_inside_zero_k0_even_when_saturated():
    torch.manual_seed(0)
    head = CurvatureHead(d_model=8, hidden=16, k0=1.5)
    with torch.no_grad():
        head.mlp[2].bias.fill_(0.0)
        for scale in (1e-3, 1.0, 1e3, 1e6):
            for sign in (1.0, -1.0):
                a = sign * scale * torch.randn(6, 5, 8)
                v = sign * scale * torch.randn(6, 5, 8)
                c = head(a, v)
                assert c.shape == (6,)
                assert ((c > 0) & (c < 1.5)).all(), (scale, c)
        head.mlp[2].bias.fill_(1e4)  # sigmoid == 1.0 exactly in float32
        assert (head(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8)) < 1.5).all()
        head.mlp[2].bias.fill_(-1e4)  # sigmoid == 0.0 exactly
        assert (head(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8)) > 0).all()
    fixed = CurvatureHead(d_model=8, hidden=16, k0=0.7, adaptive=False)
    assert list(fixed.parameters()) == []
    assert torch.equal(fixed(torch.randn(3, 4, 8), torch.randn(3, 4, 8)), torch.full((3,), 0.7))


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_alignment_loss_lower_for_matched_than_shuffled_pairs(geometry):
    g = _gen(3)
    V, d = 8, 16
    scene = clip_tangent(torch.randn(V, d, generator=g), 1.5)
    audio = scene + 0.05 * torch.randn(V, d, generator=g)
    visual = scene + 0.05 * torch.randn(V, d, generator=g)
    shuffled = visual[torch.roll(torch.arange(V), 1)]
    c = torch.linspace(0.2, 0.9, V) if geometry == "hyperbolic" else None
    matched_loss = alignment_loss(audio, visual, c, temperature=0.1)
    shuffled_loss = alignment_loss(audio, shuffled, c, temperature=0.1)
    assert matched_loss < 0.5 * shuffled_loss, (matched_loss, shuffled_loss)
    # one video: no negatives, nothing to contrast
    assert float(alignment_loss(audio[:1], visual[:1], None if c is None else c[:1], 0.1)) == 0.0


@pytest.mark.parametrize("geometry,curvature", [("hyperbolic", "adaptive"), ("hyperbolic", "fixed"),
                                                ("euclidean", "adaptive")])
def test_alignment_no_nan_for_inputs_of_norm_1e3(geometry, curvature):
    torch.manual_seed(0)
    align = Alignment(d_model=16, geometry=geometry, curvature=curvature, curvature_hidden=8)
    a = torch.randn(4, 6, 16)
    a = (1e3 * a / a.norm(dim=-1, keepdim=True)).requires_grad_()
    v = a.detach().clone().requires_grad_()  # identical pairs: distance 0 on the diagonal
    ua, uv, loss, c = align(a, v)
    (loss + ua.sum() + uv.sum()).backward()
    assert torch.isfinite(loss) and torch.isfinite(ua).all() and torch.isfinite(uv).all()
    assert torch.isfinite(a.grad).all() and torch.isfinite(v.grad).all()
    for p in align.parameters():
        assert torch.isfinite(p.grad).all()
    assert ua.norm(dim=-1).max() <= 2.0 + 1e-4  # clipped to clip_radius
    assert (c is None) == (geometry == "euclidean")


def test_alignment_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    align = Alignment(d_model=16, curvature_hidden=8)
    a = torch.randn(3, 5, 16, dtype=torch.bfloat16)
    v = torch.randn(3, 5, 16, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ua, uv, loss, c = align(a, v)
    assert ua.dtype == uv.dtype == loss.dtype == c.dtype == torch.float32
    ref = align(a.float(), v.float())
    torch.testing.assert_close(loss, ref[2])


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_masked_alignment_loss_equals_the_loss_without_the_padding_rows(geometry):
    """Padding rows (a static-shape batch) take no part: neither as anchors nor as negatives."""
    g = _gen(7)
    a = clip_tangent(torch.randn(7, 10, generator=g), 2.0)
    v = clip_tangent(torch.randn(7, 10, generator=g), 2.0)
    c = torch.linspace(0.1, 0.9, 7) if geometry == "hyperbolic" else None
    real = 5
    pad_a = torch.cat([a[:real], a[:1].repeat(2, 1)])  # padding repeats a real video
    pad_v = torch.cat([v[:real], v[:1].repeat(2, 1)])
    pad_c = None if c is None else torch.cat([c[:real], c[:1].repeat(2)])
    mask = torch.arange(7) < real
    want = alignment_loss(a[:real], v[:real], None if c is None else c[:real], 0.1)
    got = alignment_loss(pad_a, pad_v, pad_c, 0.1, mask)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # one real video: nothing to contrast, as without padding
    one = alignment_loss(pad_a, pad_v, pad_c, 0.1, torch.arange(7) < 1)
    assert float(one) == 0.0


def test_expmap0_matches_geoopt_with_projection_far_out():
    g = _gen(8)
    u = torch.randn(3, 4, 6, generator=g) * 10.0  # sqrt(c)|u| up to ~40: projected
    c = torch.tensor([0.2, 1.0, 3.0])
    for i in range(3):
        k = torch.tensor(-float(c[i]))
        ref = pmath.project(pmath.expmap0(u[i], k=k), k=k)
        torch.testing.assert_close(expmap0(u, c)[i], ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logmap0(ref, c[i:i + 1].expand(4))[:, None].squeeze(1),
                                   pmath.logmap0(ref, k=k), rtol=1e-4, atol=1e-4)


def test_project_and_ball_features_match_geoopt():
    """features='ball': logmap0(project(x)) per video equals geoopt's project then logmap0."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 6, generator=g) * torch.tensor([0.1, 0.5, 2.0, 8.0])[:, None, None]
    c = torch.tensor([0.3, 1.0, 0.7, 0.05])
    for i in range(4):
        k = -c[i].double()
        ref = pmath.project(x[i].double(), k=k, eps=BALL_EPS)
        torch.testing.assert_close(project(x, c)[i].double(), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logmap0(project(x, c), c)[i].double(), pmath.logmap0(ref, k=k),
                                   rtol=1e-4, atol=1e-4)
    align = Alignment(6, features="ball")
    ua, _, curv = align.embed(x, x.flip(0))
    torch.testing.assert_close(ua, logmap0(project(x, curv), curv))
