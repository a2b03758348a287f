"""Hyperbolic audio-visual alignment with an adaptive, per-video curvature.

The ball lives in the alignment loss: per-video curvature c = k0 * sigmoid(MLP) (``CurvatureHead``),
clipped tangent vectors (``clip_tangent``), and a symmetric InfoNCE on negative Poincare-ball
distances (``alignment_loss`` / ``pairwise_distance``, a closed form checked against geoopt).
The temporal blocks receive the clipped tangent vectors: mapping them into the ball and straight
back (``logmap0(expmap0(u)) = u``) would be the identity, so it is not done.  The
``hyperbolic-features`` variant (``features="ball"``) instead reads the encoder outputs as points
of the ball and passes on ``logmap0(project(x))``, which depends on c.  Rationale and the
ablation that decided between them: docs/MODEL.md, README.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
with warnings.catch_warnings():   # geoopt scripts its math; torch calls torch.jit.script deprecated
    warnings.filterwarnings("ignore", r".*torch\.jit\.script.*deprecated", FutureWarning)
    from geoopt.manifolds.stereographic import math as pmath  # the slow reference only

CURVATURE_MARGIN = 1e-5  # c = k0 * (m + (1 - 2m) * sigmoid): strictly inside (0, k0) in float32
BALL_EPS = 4e-3  # geoopt's float32 projection margin: points stay within (1 - eps) / sqrt(c)


def clip_tangent(u: torch.Tensor, radius: float) -> torch.Tensor:
    """Scale vectors (last dim) with norm > radius down to norm = radius; others unchanged."""
    norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    return u * (radius / norm).clamp(max=1.0)


def project(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Points x [V, ..., d] scaled into the ball of curvature -c[v]: norm at most
    (1 - BALL_EPS) / sqrt(c) (geoopt's project in closed form: no host syncs).  float32."""
    x, sc = x.float(), _sqrt_c(c, x.dim())
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    return x * ((1.0 - BALL_EPS) / (sc * norm)).clamp(max=1.0)


def _sqrt_c(c: torch.Tensor, ndim: int) -> torch.Tensor:
    """sqrt of the per-video curvature [V], shaped [V, 1, ...] to broadcast over ndim dims."""
    return c.float().sqrt().reshape(c.shape[0], *([1] * (ndim - 1)))


def expmap0(u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Tangent vectors u [V, ..., d] into the ball of curvature -c[v], kept strictly inside it
    (geoopt's expmap0 + project in closed form: no host syncs).  float32."""
    u, sc = u.float(), _sqrt_c(c, u.dim())
    norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    radius = torch.minimum(torch.tanh(sc * norm), torch.full_like(norm, 1.0 - BALL_EPS))
    return u * (radius / (sc * norm))


def logmap0(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Ball points x [V, ..., d] back to the tangent space at the origin.  float32."""
    x, sc = x.float(), _sqrt_c(c, x.dim())
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    return x * (torch.atanh((sc * norm).clamp(max=1.0 - 1e-7)) / (sc * norm))


def pairwise_distance(anchor: torch.Tensor, other: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Distances [..., V, V] between tangent vectors anchor_i and other_j [..., V, d] (any leading
    dims, e.g. both directions of the alignment loss in one pass): hyperbolic in the ball of
    curvature -c_i (row i uses the anchor's curvature, c [V]), or 2 * Euclidean when c is None.

    Fast path, O(V^2 + V^2 d) in one matrix product instead of [V, V, d] intermediates (25 GiB
    at V = 1254 with the broadcast geoopt form).  expmap0 only rescales a vector:
    x = tanh(sqrt(c)|u|) / (sqrt(c)|u|) * u, so every Mobius-addition term of
    d_c(x, y) = 2/sqrt(c) * artanh(sqrt(c) * |(-x) (+)_c y|) follows from the radii |x|, |y| and
    the cosines <u_a, u_o> / (|u_a| |u_o|).  Computed in float64 (cheap at [V, V]; no cancellation
    or TF32 matmul error for nearby points), returned as float32.
    ``pairwise_distance_reference`` is the same with geoopt, broadcast; tests check they agree.
    """
    a, o = anchor.double(), other.double()
    na = a.norm(dim=-1).clamp_min(1e-15)[..., :, None]             # [..., V, 1]
    no = o.norm(dim=-1).clamp_min(1e-15)[..., None, :]             # [..., 1, V]
    dot = a @ o.transpose(-1, -2)                                   # [..., V, V]
    if c is None:
        sq = (na ** 2 + no ** 2 - 2.0 * dot).clamp_min(1e-12)
        return (2.0 * sq.sqrt()).float()
    c = c.double()[:, None]                                         # [V, 1]: row curvature
    sc = c.sqrt()
    rmax = (1.0 - BALL_EPS) / sc
    rx = torch.minimum(torch.tanh(sc * na) / sc, rmax)              # |x_i|      [..., V, 1]
    ry = torch.minimum(torch.tanh(sc * no) / sc, rmax)              # |y_j| in c_i [..., V, V]
    xy = rx * ry * dot / (na * no)                                  # <x_i, y_j>
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
                   temperature: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE on negative distances between pooled tangent vectors audio, visual [V, d].

    ``c`` [V]: per-video curvature (hyperbolic), or None (Euclidean).  ``mask`` [V] bool: only
    these videos take part (padding rows of a static-shape batch do not).  A float32 scalar.
    """
    V = audio.shape[0]
    target = torch.arange(V, device=audio.device).repeat(2)
    # audio->visual and visual->audio rows in one pass: [2, V, V] -> [2V, V]
    logits = -pairwise_distance(torch.stack([audio, visual]), torch.stack([visual, audio]), c)
    logits = (logits / temperature).reshape(2 * V, V)
    if mask is None:
        return F.cross_entropy(logits, target)
    keep = mask.to(logits.dtype).repeat(2)
    per_row = F.cross_entropy(logits.masked_fill(~mask[None, :], -1e9), target, reduction="none")
    return (per_row * keep).sum() / keep.sum().clamp_min(1.0)


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
    """Clips the audio and visual sequences, computes the per-video curvature and the alignment
    loss in the ball, returns the clipped per-time-step tangent features for the temporal blocks.

    ``geometry="euclidean"``: same clip and features, Euclidean distance, no curvature.
    ``features="ball"``: the encoder outputs are read as points of the ball (projected into it)
    and the features are their tangent vectors ``logmap0(project(x))``, which depend on c.
    """

    def __init__(self, d_model: int, geometry: str = "hyperbolic", curvature: str = "adaptive",
                 k0: float = 1.0, curvature_hidden: int = 64, clip_radius: float = 2.0,
                 temperature: float = 0.1, features: str = "tangent"):
        super().__init__()
        self.geometry, self.features = geometry, features
        self.clip_radius = float(clip_radius)
        self.temperature = float(temperature)
        self.curvature = (CurvatureHead(d_model, curvature_hidden, k0, adaptive=curvature == "adaptive")
                          if geometry == "hyperbolic" else None)

    def embed(self, a: torch.Tensor, v: torch.Tensor):
        """a, v [V, T, d] -> (clipped a', v' [V, T, d] float32, curvature [V] or None)."""
        with torch.autocast(device_type=a.device.type, enabled=False):
            a, v = a.float(), v.float()
            c = None if self.curvature is None else self.curvature(a, v)
            if self.features == "ball":  # encoder outputs are ball points: their tangent vectors
                return logmap0(project(a, c), c), logmap0(project(v, c), c), c
            return clip_tangent(a, self.clip_radius), clip_tangent(v, self.clip_radius), c

    def forward(self, a: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None):
        """a, v [V, T, d] -> (clipped a', v' [V, T, d] float32, loss scalar, curvature [V] or
        None).  ``mask`` [V] bool: the videos that take part in the loss (None: all)."""
        ua, uv, c = self.embed(a, v)
        with torch.autocast(device_type=a.device.type, enabled=False):
            loss = alignment_loss(ua.mean(dim=1), uv.mean(dim=1), c, self.temperature, mask)
        return ua, uv, loss, c
