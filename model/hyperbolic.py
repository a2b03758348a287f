"""Hyperbolic audio-visual alignment with an adaptive, per-video curvature.

Read top to bottom:

1. ``CurvatureHead``: c = k0 * sigmoid(MLP([mean_t a ; mean_t v])) per video, in (0, k0)
   (``adaptive``; the sigmoid is squeezed into [1e-5, 1 - 1e-5] so that c never reaches 0 or
   k0, even where float32's sigmoid saturates), or the constant c = k0 (``fixed``).  The
   Poincare ball of curvature -c has radius 1/sqrt(c).
2. ``clip_tangent``: feature vectors are clipped to norm <= ``clip_radius`` before they are
   mapped into the ball (Guo et al. 2022, "Clipped hyperbolic classifiers"): without the clip,
   large features land on the boundary, where distances and gradients blow up.
3. ``to_ball`` / ``to_tangent``: ``geoopt.manifolds.stereographic.math.expmap0`` (then a
   projection strictly inside the ball) and ``logmap0``, with the per-video curvature broadcast
   as k = -c of shape [V, 1, ...].  Always float32, autocast disabled.  geoopt's math runs
   eagerly (:mod:`model.eager_geoopt`), not as TorchScript, so a step computes the same bits in
   every process whatever ran before in it (exact resume depends on that).
4. ``alignment_loss``: symmetric InfoNCE on negative distances between the time-pooled audio and
   visual points of the videos in the batch (below: why this form).  ``pairwise_distance`` is a
   closed form in O(V^2) memory; ``pairwise_distance_reference`` is the same with geoopt's
   expmap0 / project / dist broadcast over [V, V, d]; tests check they agree.
5. ``Alignment``: the module the model uses.  It returns the per-time-step features that go on
   to the temporal blocks, the loss and the curvature.

What the temporal blocks receive.  The audio and visual sequences are mapped into the ball and
brought back to the tangent space at the origin with ``logmap0`` (the Mamba blocks are Euclidean
layers).  logmap0 inverts expmap0, so these features equal the clipped encoder outputs (to
float32 rounding: SHMambaConfig keeps sqrt(k0) * clip_radius <= 3, so |x| <= tanh(3)/sqrt(c) and
the boundary projection at (1 - 4e-3)/sqrt(c) never acts); the hyperbolic
geometry shapes the model through the alignment loss, whose gradients train the encoders (and the
curvature MLP), and through the clipping.  The ``euclidean`` variant keeps the clip and the
features identical and replaces only the distance in the loss, so that ablation isolates the
geometry of the alignment.

Why this loss.  The audio and the frames of one video describe the same scene, so the pair
(audio_i, visual_i) should be closer than (audio_i, visual_j) for another video j.  A contrastive
(InfoNCE) loss says exactly that and needs no labels; a plain pull-together loss (distance of the
positive pair only) has a trivial minimum at which every video maps to one point.  Using the
negative hyperbolic distance as the similarity puts the comparison in the curved space: near the
boundary, distances grow exponentially, which lets specific (leaf-like) events be far apart while
generic ones sit near the origin.  The loss is symmetric (audio->visual and visual->audio) like
CLIP's.  Each video has its own curvature, so every comparison is made in the ball of the anchor
video: row i of the audio->visual logits uses c_i for audio_i and every visual_j (and likewise
for visual->audio).  The positive pair always uses its own video's curvature.  The time pooling
is the mean in the tangent space at the origin (the Frechet mean is costlier and, for points this
close to the origin, nearly the same).  Videos in a batch must be distinct (the model runs the
per-video path once per distinct video, so they are); with V = 1 there are no negatives and the
loss is 0.

The Euclidean loss uses 2 * ||u_a - u_v||, which is exactly the hyperbolic distance in the limit
c -> 0 (geoopt's conformal factor at the origin is 2), so temperatures are comparable.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from .eager_geoopt import pmath

CURVATURE_MARGIN = 1e-5  # c = k0 * (m + (1 - 2m) * sigmoid): strictly inside (0, k0) in float32


def clip_tangent(u: torch.Tensor, radius: float) -> torch.Tensor:
    """Scale vectors (last dim) with norm > radius down to norm = radius; others unchanged."""
    norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    return u * (radius / norm).clamp(max=1.0)


def _k(c: torch.Tensor, ndim: int) -> torch.Tensor:
    """Per-video curvature [V] as geoopt's k = -c, shaped [V, 1, ...] to broadcast over ndim dims."""
    return -c.reshape(c.shape[0], *([1] * (ndim - 1)))


def to_ball(u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """expmap0 of tangent vectors u [V, ..., d] into the ball of curvature -c[v], then projected
    strictly inside it.  float32."""
    k = _k(c.float(), u.dim())
    return pmath.project(pmath.expmap0(u.float(), k=k), k=k)


def to_tangent(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """logmap0 of ball points x [V, ..., d] back to the tangent space at the origin.  float32."""
    return pmath.logmap0(x.float(), k=_k(c.float(), x.dim()))


BALL_EPS = 4e-3  # geoopt's float32 projection margin: points stay within (1 - eps) / sqrt(c)


def pairwise_distance(anchor: torch.Tensor, other: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Distances [V, V] between tangent vectors anchor_i and other_j [V, d]: hyperbolic in the
    ball of curvature -c_i (row i uses the anchor's curvature), or 2 * Euclidean when c is None.

    Fast path, O(V^2 + V^2 d) in one matrix product instead of [V, V, d] intermediates (25 GiB
    at V = 1254 with the broadcast geoopt form).  expmap0 only rescales a vector:
    x = tanh(sqrt(c)|u|) / (sqrt(c)|u|) * u, so every Mobius-addition term of
    d_c(x, y) = 2/sqrt(c) * artanh(sqrt(c) * |(-x) (+)_c y|) follows from the radii |x|, |y| and
    the cosines <u_a, u_o> / (|u_a| |u_o|).  Computed in float64 (cheap at [V, V]; no cancellation
    or TF32 matmul error for nearby points), returned as float32.
    ``pairwise_distance_reference`` is the same with geoopt, broadcast; tests check they agree.
    """
    a, o = anchor.double(), other.double()
    na, no = a.norm(dim=-1).clamp_min(1e-15), o.norm(dim=-1).clamp_min(1e-15)
    dot = a @ o.T                                                   # [V, V]
    if c is None:
        sq = (na[:, None] ** 2 + no[None, :] ** 2 - 2.0 * dot).clamp_min(1e-12)
        return (2.0 * sq.sqrt()).float()
    c = c.double()[:, None]                                         # [V, 1]: row curvature
    sc = c.sqrt()
    rmax = (1.0 - BALL_EPS) / sc
    rx = torch.minimum(torch.tanh(sc * na[:, None]) / sc, rmax)     # |x_i|      [V, 1]
    ry = torch.minimum(torch.tanh(sc * no[None, :]) / sc, rmax)     # |y_j| in c_i [V, V]
    xy = rx * ry * dot / (na[:, None] * no[None, :])                # <x_i, y_j>
    x2, y2 = rx * rx, ry * ry
    # (-x) (+) y with k = -c: num = A * (-x) + B * y, den = 1 - 2c<x,y> + c^2 |x|^2 |y|^2
    A = 1.0 - 2.0 * c * xy + c * y2
    B = 1.0 - c * x2
    num2 = (A * A * x2 - 2.0 * A * B * xy + B * B * y2).clamp_min(1e-24)
    den = 1.0 - 2.0 * c * xy + c * c * x2 * y2
    z = (sc * num2.sqrt() / den).clamp(max=1.0 - 1e-12)
    return (2.0 / sc * torch.atanh(z)).float()


def pairwise_distance_reference(anchor: torch.Tensor, other: torch.Tensor, c: torch.Tensor | None,
                                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Slow reference of ``pairwise_distance``: geoopt expmap0 / project / dist, broadcast over
    [V, V, d], in ``dtype`` (float64 for a ground truth near the boundary, where float32 loses
    ~1e-3 relative)."""
    a, o = anchor.to(dtype), other.to(dtype)
    if c is None:
        return 2.0 * (a[:, None, :] - o[None, :, :]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    k = -c.to(dtype)[:, None, None]                                 # [V, 1, 1]
    xa = pmath.project(pmath.expmap0(a[:, None, :], k=k), k=k, eps=BALL_EPS)   # [V, 1, d]
    xo = pmath.project(pmath.expmap0(o[None, :, :], k=k), k=k, eps=BALL_EPS)   # [V, V, d]
    # keepdim: the distance stays [V, V, 1] so that k [V, 1, 1] broadcasts per row, not to [V, V, V]
    return pmath.dist(xa, xo, k=k, keepdim=True).squeeze(-1)        # [V, V]


def alignment_loss(audio: torch.Tensor, visual: torch.Tensor, c: torch.Tensor | None,
                   temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE on negative distances between pooled tangent vectors audio, visual [V, d].

    ``c`` [V]: per-video curvature (hyperbolic), or None (Euclidean).  Returns a float32 scalar.
    """
    target = torch.arange(audio.shape[0], device=audio.device)
    a2v = -pairwise_distance(audio, visual, c) / temperature
    v2a = -pairwise_distance(visual, audio, c) / temperature
    return 0.5 * (F.cross_entropy(a2v, target) + F.cross_entropy(v2a, target))


class CurvatureHead(nn.Module):
    """Per-video curvature c in (0, k0): k0 * sigmoid(MLP([mean_t a ; mean_t v])).

    ``adaptive=False``: the constant c = k0 for every video (no parameters).
    """

    def __init__(self, d_model: int, hidden: int, k0: float, adaptive: bool = True):
        super().__init__()
        self.k0 = float(k0)
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1)) if adaptive else None

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """a, v [V, T, d] -> c [V] (float32)."""
        if self.mlp is None:
            return torch.full((a.shape[0],), self.k0, device=a.device, dtype=torch.float32)
        pooled = torch.cat([a.mean(dim=1), v.mean(dim=1)], dim=-1).float()
        logit = self.mlp(pooled).squeeze(-1)
        m = CURVATURE_MARGIN
        return self.k0 * (m + (1.0 - 2.0 * m) * torch.sigmoid(logit))


class Alignment(nn.Module):
    """Maps audio and visual sequences into the ball, computes the alignment loss, returns the
    per-time-step tangent features for the temporal blocks.

    ``geometry="euclidean"``: same clip and features, Euclidean distance, no curvature.
    """

    def __init__(self, d_model: int, geometry: str = "hyperbolic", curvature: str = "adaptive",
                 k0: float = 1.0, curvature_hidden: int = 64, clip_radius: float = 2.0,
                 temperature: float = 0.1):
        super().__init__()
        self.geometry = geometry
        self.clip_radius = float(clip_radius)
        self.temperature = float(temperature)
        self.curvature = (CurvatureHead(d_model, curvature_hidden, k0, adaptive=curvature == "adaptive")
                          if geometry == "hyperbolic" else None)

    def forward(self, a: torch.Tensor, v: torch.Tensor):
        """a, v [V, T, d] -> (a', v' [V, T, d] float32, loss scalar, curvature [V] or None)."""
        with torch.autocast(device_type=a.device.type, enabled=False):
            a, v = a.float(), v.float()
            ua, uv = clip_tangent(a, self.clip_radius), clip_tangent(v, self.clip_radius)
            if self.curvature is None:
                c = None
            else:
                c = self.curvature(a, v)
                ua, uv = to_tangent(to_ball(ua, c), c), to_tangent(to_ball(uv, c), c)
            loss = alignment_loss(ua.mean(dim=1), uv.mean(dim=1), c, self.temperature)
        return ua, uv, loss, c
