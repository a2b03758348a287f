"""Mamba's selective scan for short sequences: a Triton kernel (fast path) and a sequential
PyTorch reference (``selective_scan_ref``); tests check they agree, values and gradients.

Layout: time-major, channels last — u, delta, z, y [b, L, d]; B, C [b, L, n]; A [d, n]; D,
delta_bias [d].  Per channel c and state n:

    dt_t = softplus(delta_t + delta_bias);  h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t
    y_t = (<h_t, C_t> + D u_t) * silu(z_t)

One Triton program runs the recurrence of one sequence over a block of channels, all states in
registers, so dB and dC sum over channels inside the program (mamba-ssm's CUDA kernel sums them
with atomics across every channel, which dominates its backward at T = 60).  The forward keeps
the state every CHUNK steps; the backward recomputes one chunk at a time from those checkpoints
and runs the recurrence in reverse.  Why: docs/TRAINING.md.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
FIXED = {"BLOCK": 32} if INTERPRET else {}  # autotuned on the GPU

try:
    import triton
    import triton.language as tl
except ImportError:  # the reference and the other backends still work
    triton = None


def selective_scan_ref(u, delta, A, B, C, D, z, delta_bias):
    """The slow reference: the recurrence one time step at a time, float32."""
    u, delta, z = u.float(), delta.float(), z.float()
    B, C = B.float(), C.float()
    dt = F.softplus(delta + delta_bias.float())                       # [b, L, d]
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])              # [b, d, n]
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1) * F.silu(z)


def available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _softplus(x):
        return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))

    CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b in (8, 16, 32, 64) for w in (1, 2, 4)
               if b * 16 >= 32 * w]

    @triton.jit
    def _load_step(u_ptr, dl_ptr, b_ptr, pb, t, ok, offs, m, n, su_b, su_t, sdl_b, sdl_t, sb_b, sb_t):
        """u_t, delta_t (raw) and B_t in float32; zeros where ``ok`` is false (past either end)."""
        u = tl.load(u_ptr + pb * su_b + t * su_t + offs, mask=m & ok, other=0.0).to(tl.float32)
        dl = tl.load(dl_ptr + pb * sdl_b + t * sdl_t + offs, mask=m & ok, other=0.0).to(tl.float32)
        Bt = tl.load(b_ptr + pb * sb_b + t * sb_t + n, mask=(n >= 0) & ok, other=0.0).to(tl.float32)
        return u, dl, Bt

    @triton.jit
    def _load_out(z_ptr, c_ptr, pb, t, ok, offs, m, n, sz_b, sz_t, sc_b, sc_t):
        z = tl.load(z_ptr + pb * sz_b + t * sz_t + offs, mask=m & ok, other=0.0).to(tl.float32)
        Ct = tl.load(c_ptr + pb * sc_b + t * sc_t + n, mask=(n >= 0) & ok, other=0.0).to(tl.float32)
        return z, Ct

    # Each loop loads the next step's inputs before it computes the current one (software
    # prefetch): the recurrence is latency-bound, not bandwidth-bound, at T = 60.

    @triton.jit
    def _scan_fwd(u_ptr, dl_ptr, z_ptr, b_ptr, c_ptr, a_ptr, d_ptr, bias_ptr, y_ptr, ck_ptr, L, DIM,
                  su_b, su_t, sdl_b, sdl_t, sz_b, sz_t, sb_b, sb_t, sc_b, sc_t,
                  N: tl.constexpr, CH: tl.constexpr, SAVE: tl.constexpr, BLOCK: tl.constexpr):
        pb, pd = tl.program_id(0).to(tl.int64), tl.program_id(1)
        offs = pd * BLOCK + tl.arange(0, BLOCK)
        m = offs < DIM
        n = tl.arange(0, N)
        m2 = m[:, None]
        A = tl.load(a_ptr + offs[:, None] * N + n[None, :], mask=m2, other=0.0)
        Dv = tl.load(d_ptr + offs, mask=m, other=0.0)
        bias = tl.load(bias_ptr + offs, mask=m, other=0.0)
        # checkpoints for the backward: the state before each chunk of CH steps
        ck = ck_ptr + (pb * tl.cdiv(L, CH) * DIM) * N + offs[:, None] * N + n[None, :]
        h = tl.zeros((BLOCK, N), dtype=tl.float32)
        u, dl, Bt = _load_step(u_ptr, dl_ptr, b_ptr, pb, 0, L > 0, offs, m, n, su_b, su_t, sdl_b, sdl_t, sb_b, sb_t)
        z, Ct = _load_out(z_ptr, c_ptr, pb, 0, L > 0, offs, m, n, sz_b, sz_t, sc_b, sc_t)
        for t in range(L):
            if SAVE:
                tl.store(ck + (t // CH) * DIM * N, h, mask=m2 & (t % CH == 0))
            ok = t + 1 < L
            u2, dl2, B2 = _load_step(u_ptr, dl_ptr, b_ptr, pb, t + 1, ok, offs, m, n, su_b, su_t,
                                     sdl_b, sdl_t, sb_b, sb_t)
            z2, C2 = _load_out(z_ptr, c_ptr, pb, t + 1, ok, offs, m, n, sz_b, sz_t, sc_b, sc_t)
            dt = _softplus(dl + bias)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = tl.sum(h * Ct[None, :], axis=1) + Dv * u
            y = y * z * tl.sigmoid(z)
            tl.store(y_ptr + pb * L * DIM + t * DIM + offs, y.to(y_ptr.dtype.element_ty), mask=m)
            u, dl, Bt, z, Ct = u2, dl2, B2, z2, C2

    @triton.jit
    def _chunk_state(cs, ck, j, m2, DIM, N: tl.constexpr):
        """State j of the chunk being reversed (cs[j]); the checkpoint before it for j = -1; zeros
        below."""
        return tl.load(cs + j * DIM * N, mask=m2 & (j >= 0), other=0.0) \
            + tl.load(ck, mask=m2 & (j == -1), other=0.0)

    @triton.jit
    def _scan_bwd(u_ptr, dl_ptr, z_ptr, b_ptr, c_ptr, a_ptr, d_ptr, bias_ptr, dy_ptr, ck_ptr, cs_ptr,
                  du_ptr, ddl_ptr, dz_ptr, db_ptr, dc_ptr, da_ptr, dd_ptr, dbias_ptr, L, DIM,
                  su_b, su_t, sdl_b, sdl_t, sz_b, sz_t, sb_b, sb_t, sc_b, sc_t,
                  N: tl.constexpr, CH: tl.constexpr, BLOCK: tl.constexpr):
        pb, pd = tl.program_id(0).to(tl.int64), tl.program_id(1)
        offs = pd * BLOCK + tl.arange(0, BLOCK)
        m = offs < DIM
        n = tl.arange(0, N)
        m2 = m[:, None]
        A = tl.load(a_ptr + offs[:, None] * N + n[None, :], mask=m2, other=0.0)
        Dv = tl.load(d_ptr + offs, mask=m, other=0.0)
        bias = tl.load(bias_ptr + offs, mask=m, other=0.0)
        nch = tl.cdiv(L, CH)
        # checkpoints (written by the forward): the state before each chunk; chunk states: the
        # states of one chunk at a time, recomputed from its checkpoint
        ck = ck_ptr + (pb * nch * DIM) * N + offs[:, None] * N + n[None, :]   # + k * DIM * N
        cs = cs_ptr + (pb * CH * DIM) * N + offs[:, None] * N + n[None, :]    # + j * DIM * N
        g = tl.zeros((BLOCK, N), dtype=tl.float32)
        gA = tl.zeros((BLOCK, N), dtype=tl.float32)
        gD = tl.zeros((BLOCK,), dtype=tl.float32)
        gbias = tl.zeros((BLOCK,), dtype=tl.float32)
        t = L - 1   # the reverse loop's inputs, one step ahead
        u, dl, Bt = _load_step(u_ptr, dl_ptr, b_ptr, pb, t, t >= 0, offs, m, n, su_b, su_t, sdl_b, sdl_t, sb_b, sb_t)
        z, Ct = _load_out(z_ptr, c_ptr, pb, t, t >= 0, offs, m, n, sz_b, sz_t, sc_b, sc_t)
        dout = tl.load(dy_ptr + pb * L * DIM + t * DIM + offs, mask=m & (t >= 0), other=0.0).to(tl.float32)
        for kk in range(nch):
            k = nch - 1 - kk
            t0 = k * CH
            steps = tl.minimum(L - t0, CH)
            h = tl.load(ck + k * DIM * N, mask=m2, other=0.0)
            ru, rdl, rB = _load_step(u_ptr, dl_ptr, b_ptr, pb, t0, t0 < L, offs, m, n, su_b, su_t,
                                     sdl_b, sdl_t, sb_b, sb_t)
            for j in range(steps):  # recompute this chunk's states
                ru2, rdl2, rB2 = _load_step(u_ptr, dl_ptr, b_ptr, pb, t0 + j + 1, j + 1 < steps, offs, m,
                                            n, su_b, su_t, sdl_b, sdl_t, sb_b, sb_t)
                rdt = _softplus(rdl + bias)
                h = tl.exp(rdt[:, None] * A) * h + (rdt * ru)[:, None] * rB[None, :]
                tl.store(cs + j * DIM * N, h, mask=m2)
                ru, rdl, rB = ru2, rdl2, rB2
            # the reverse loop carries h_t in registers and loads h_{t-1} one step ahead: state j
            # of the chunk is cs[j], the state before it the checkpoint
            hp = h
            hq = _chunk_state(cs, ck + k * DIM * N, steps - 2, m2, DIM, N)
            for jj in range(steps):
                j = steps - 1 - jj
                t = t0 + j
                row = pb * L * DIM + t * DIM + offs
                ok = t >= 1
                u2, dl2, B2 = _load_step(u_ptr, dl_ptr, b_ptr, pb, t - 1, ok, offs, m, n, su_b, su_t,
                                         sdl_b, sdl_t, sb_b, sb_t)
                z2, C2 = _load_out(z_ptr, c_ptr, pb, t - 1, ok, offs, m, n, sz_b, sz_t, sc_b, sc_t)
                dout2 = tl.load(dy_ptr + row - DIM, mask=m & ok, other=0.0).to(tl.float32)
                h, hp = hp, hq
                hq = _chunk_state(cs, ck + k * DIM * N, j - 2, m2, DIM, N)
                draw = dl + bias
                dt = _softplus(draw)
                sz = tl.sigmoid(z)
                y = tl.sum(h * Ct[None, :], axis=1) + Dv * u
                dy = dout * z * sz
                tl.store(dz_ptr + row, (dout * y * sz * (1.0 + z * (1.0 - sz))).to(dz_ptr.dtype.element_ty), mask=m)
                gD += dy * u
                g += dy[:, None] * Ct[None, :]
                dA = tl.exp(dt[:, None] * A)
                ghd = g * hp * dA
                gA += ghd * dt[:, None]
                dxu = tl.sum(g * Bt[None, :], axis=1)
                ddt = dxu * u + tl.sum(ghd * A, axis=1)
                dd = ddt * tl.sigmoid(draw)
                gbias += dd
                tl.store(du_ptr + row, (dy * Dv + dxu * dt).to(du_ptr.dtype.element_ty), mask=m)
                tl.store(ddl_ptr + row, dd.to(ddl_ptr.dtype.element_ty), mask=m)
                bt = pb * L * N + t * N + n   # summed over channel blocks (few programs per address)
                # relaxed: only the sums at the end matter, and the default acq_rel fences each add
                tl.atomic_add(dc_ptr + bt, tl.sum(dy[:, None] * h, axis=0), sem="relaxed")
                tl.atomic_add(db_ptr + bt, tl.sum(g * (dt * u)[:, None], axis=0), sem="relaxed")
                g = g * dA
                u, dl, Bt, z, Ct, dout = u2, dl2, B2, z2, C2, dout2
        tl.store(da_ptr + (pb * DIM + offs[:, None]) * N + n[None, :], gA, mask=m2)
        tl.store(dd_ptr + pb * DIM + offs, gD, mask=m)
        tl.store(dbias_ptr + pb * DIM + offs, gbias, mask=m)


    # The convolution has no recurrence: a forward program takes a tile of BT time steps x BD
    # channels, so all time steps run in parallel (a loop over single steps was latency-bound);
    # a backward program walks one sequence BT steps at a time (with BT = 64, once at T = 60),
    # keeping its dw, dbias sums in registers.

    @triton.jit
    def _conv_fwd(x_ptr, w_ptr, bias_ptr, pre_ptr, y_ptr, L, DIM, sx_b, sx_t,
                  K: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr):
        pb, pt, pd = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
        t = pt * BT + tl.arange(0, BT)[:, None]
        offs = pd * BD + tl.arange(0, BD)[None, :]
        m = offs < DIM
        acc = tl.zeros((BT, BD), dtype=tl.float32) + tl.load(bias_ptr + offs, mask=m, other=0.0).to(tl.float32)
        for k in tl.static_range(K):
            s = t - (K - 1) + k
            w = tl.load(w_ptr + offs * K + k, mask=m, other=0.0).to(tl.float32)
            acc += w * tl.load(x_ptr + pb * sx_b + s * sx_t + offs, mask=m & (s >= 0) & (s < L),
                               other=0.0).to(tl.float32)
        row = pb * L * DIM + t * DIM + offs
        ok = m & (t < L)
        tl.store(pre_ptr + row, acc.to(pre_ptr.dtype.element_ty), mask=ok)
        tl.store(y_ptr + row, (acc * tl.sigmoid(acc)).to(y_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _dpre(pre_ptr, dy_ptr, rows, ok):
        """d loss / d pre-activation: dy * silu'(pre), float32; zero where not ``ok``."""
        p = tl.load(pre_ptr + rows, mask=ok, other=0.0).to(tl.float32)
        sp = tl.sigmoid(p)
        return tl.load(dy_ptr + rows, mask=ok, other=0.0).to(tl.float32) * sp * (1.0 + p * (1.0 - sp))

    @triton.jit
    def _conv_bwd(x_ptr, w_ptr, pre_ptr, dy_ptr, dx_ptr, dw_ptr, dbias_ptr, L, DIM, sx_b, sx_t,
                  K: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr):
        """dx of one sequence's BD channels, BT steps at a time; dw, dbias summed over all its
        steps into row pb (so the partial sums' shape does not depend on the tile)."""
        pb, pd = tl.program_id(0).to(tl.int64), tl.program_id(1)
        offs1 = pd * BD + tl.arange(0, BD)
        offs = offs1[None, :]
        m = offs < DIM
        base = pb * L * DIM
        gb = tl.zeros((BD,), dtype=tl.float32)
        gw = tl.zeros((BD, K), dtype=tl.float32)
        taps = tl.arange(0, K)[None, :]
        for t0 in range(0, L, BT):
            t = t0 + tl.arange(0, BT)[:, None]
            # x_t feeds outputs t .. t + K - 1, through tap k = K - 1 - j
            dx = tl.zeros((BT, BD), dtype=tl.float32)
            for j in tl.static_range(K):
                s = t + j
                w = tl.load(w_ptr + offs * K + (K - 1 - j), mask=m, other=0.0).to(tl.float32)
                dx += w * _dpre(pre_ptr, dy_ptr, base + s * DIM + offs, m & (s < L))
            tl.store(dx_ptr + base + t * DIM + offs, dx.to(dx_ptr.dtype.element_ty), mask=m & (t < L))
            dp = _dpre(pre_ptr, dy_ptr, base + t * DIM + offs, m & (t < L))
            gb += tl.sum(dp, axis=0)
            for k in tl.static_range(K):  # dw[k] += dpre_t * x_{t-K+1+k}
                s = t - (K - 1) + k
                xs = tl.load(x_ptr + pb * sx_b + s * sx_t + offs, mask=m & (s >= 0) & (s < L),
                             other=0.0).to(tl.float32)
                gw += tl.where(taps == k, tl.sum(dp * xs, axis=0)[:, None], 0.0)
        tl.store(dbias_ptr + pb * DIM + offs1, gb, mask=offs1 < DIM)
        tl.store(dw_ptr + (pb * DIM + offs1[:, None]) * K + taps, gw, mask=(offs1 < DIM)[:, None])

    CONV_CONFIGS = [triton.Config({"BT": bt, "BD": bd}, num_warps=w)
                    for bt, bd, w in ((16, 64, 4), (32, 64, 4), (64, 64, 4), (64, 32, 2),
                                      (32, 128, 4), (64, 128, 8))]

    if not INTERPRET:  # the interpreter cannot time configurations: it runs FIXED
        _scan_fwd = triton.autotune(configs=CONFIGS, key=["DIM", "N"])(_scan_fwd)
        _scan_bwd = triton.autotune(configs=CONFIGS, key=["DIM", "N"],
                                    reset_to_zero=["db_ptr", "dc_ptr"])(_scan_bwd)
        _conv_fwd = triton.autotune(configs=CONV_CONFIGS, key=["DIM", "K"])(_conv_fwd)
        _conv_bwd = triton.autotune(configs=CONV_CONFIGS, key=["DIM", "K"])(_conv_bwd)


def _strides(*ts):
    out = []
    for t in ts:
        if t.stride(-1) != 1:
            raise ValueError("selective_scan: the last dimension must be contiguous")
        out += [t.stride(0), t.stride(1)]
    return out


# The kernels are registered as torch custom ops (torch.library) with their autograd formulas:
# torch.compile then treats each as one opaque call and fuses only the PyTorch code around it,
# instead of tracing into the launches (autotuning, atomics, checkpoints) itself.

# convolution tile (time steps x channels): autotuned on the GPU, fixed in the interpreter
CONV_FIXED = {"BT": 16, "BD": 64} if INTERPRET else {}
CHUNK = 8  # backward: states kept in memory per program (the rest recomputed from checkpoints)


def _scan_checkpoints_shape(u: Tensor, A: Tensor, save: bool) -> tuple[int, ...]:
    b, L, d = u.shape
    return (b, -(-L // CHUNK), d, A.shape[1]) if save else (1,)


@torch.library.custom_op("shmamba::scan_fwd", mutates_args=())
def _scan_fwd_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                 delta_bias: Tensor, save: bool) -> tuple[Tensor, Tensor]:
    """(y, checkpoints): the states before every CHUNK steps when ``save`` (for the backward)."""
    b, L, d = u.shape
    y = torch.empty((b, L, d), dtype=u.dtype, device=u.device)
    ck = torch.empty(_scan_checkpoints_shape(u, A, save), dtype=torch.float32, device=u.device)
    grid = lambda meta: (b, triton.cdiv(d, meta["BLOCK"]))  # noqa: E731
    _scan_fwd[grid](u, delta, z, B, C, A, D, delta_bias, y, ck, L, d,
                    *_strides(u, delta, z, B, C), N=A.shape[1], CH=CHUNK, SAVE=save, **FIXED)
    return y, ck


@_scan_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, save):
    return u.new_empty(u.shape), u.new_empty(_scan_checkpoints_shape(u, A, save), dtype=torch.float32)


@torch.library.custom_op("shmamba::scan_bwd", mutates_args=())
def _scan_bwd_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                 delta_bias: Tensor, ck: Tensor, dy: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor,
                                                                       Tensor, Tensor, Tensor, Tensor]:
    """Gradients of (u, delta, A, B, C, D, z, delta_bias)."""
    b, L, d = u.shape
    n = A.shape[1]
    f32 = dict(dtype=torch.float32, device=u.device)
    cs = torch.empty((b, CHUNK, d, n), **f32)
    du, ddelta, dz = (torch.empty((b, L, d), dtype=t.dtype, device=u.device) for t in (u, delta, z))
    dB, dC = torch.zeros((b, L, n), **f32), torch.zeros((b, L, n), **f32)
    dA_part, dD_part, dbias_part = torch.empty((b, d, n), **f32), torch.empty((b, d), **f32), \
        torch.empty((b, d), **f32)
    grid = lambda meta: (b, triton.cdiv(d, meta["BLOCK"]))  # noqa: E731
    _scan_bwd[grid](u, delta, z, B, C, A, D, delta_bias, dy.contiguous(), ck, cs, du, ddelta, dz,
                    dB, dC, dA_part, dD_part, dbias_part, L, d, *_strides(u, delta, z, B, C), N=n,
                    CH=CHUNK, **FIXED)
    return (du, ddelta, dA_part.sum(0), dB.to(B.dtype), dC.to(C.dtype), dD_part.sum(0), dz,
            dbias_part.sum(0))


@_scan_bwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, ck, dy):
    return (u.new_empty(u.shape), delta.new_empty(delta.shape), A.new_empty(A.shape),
            B.new_empty(B.shape), C.new_empty(C.shape), D.new_empty(D.shape), z.new_empty(z.shape),
            delta_bias.new_empty(delta_bias.shape))


def _scan_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8], output[1])


def _scan_backward(ctx, dy, dck):
    return (*_scan_bwd_op(*ctx.saved_tensors, dy), None)


_scan_fwd_op.register_autograd(_scan_backward, setup_context=_scan_setup)


@torch.library.custom_op("shmamba::conv_fwd", mutates_args=())
def _conv_fwd_op(x: Tensor, w: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """(silu(pre), pre) of the causal depthwise convolution; w [d, K]."""
    b, L, d = x.shape
    pre = torch.empty((b, L, d), dtype=x.dtype, device=x.device)
    y = torch.empty_like(pre)
    grid = lambda meta: (b, triton.cdiv(L, meta["BT"]), triton.cdiv(d, meta["BD"]))  # noqa: E731
    _conv_fwd[grid](x, w, bias, pre, y, L, d, *_strides(x), K=w.shape[1], **CONV_FIXED)
    return y, pre


@_conv_fwd_op.register_fake
def _(x, w, bias):
    return x.new_empty(x.shape), x.new_empty(x.shape)


@torch.library.custom_op("shmamba::conv_bwd", mutates_args=())
def _conv_bwd_op(x: Tensor, w: Tensor, pre: Tensor, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of (x, w [d, K], bias)."""
    b, L, d = x.shape
    K = w.shape[1]
    dx = torch.empty((b, L, d), dtype=x.dtype, device=x.device)
    dw = torch.empty((b, d, K), dtype=torch.float32, device=x.device)
    dbias = torch.empty((b, d), dtype=torch.float32, device=x.device)
    grid = lambda meta: (b, triton.cdiv(d, meta["BD"]))  # noqa: E731
    _conv_bwd[grid](x, w, pre, dy.contiguous(), dx, dw, dbias, L, d, *_strides(x), K=K,
                    **CONV_FIXED)
    return dx, dw.sum(0).to(w.dtype), dbias.sum(0)


@_conv_bwd_op.register_fake
def _(x, w, pre, dy):
    return x.new_empty(x.shape), w.new_empty(w.shape), w.new_empty(w.shape[:1], dtype=torch.float32)


def _conv_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1], output[1])
    ctx.bias_dtype = inputs[2].dtype


def _conv_backward(ctx, dy, dpre):
    dx, dw, dbias = _conv_bwd_op(*ctx.saved_tensors, dy)
    return dx, dw, dbias.to(ctx.bias_dtype)


_conv_fwd_op.register_autograd(_conv_backward, setup_context=_conv_setup)


def causal_conv_silu(x, weight, bias):
    """silu(Conv1d(groups=channels, padding=K-1)(x)[..., :L]) on channels-last x [b, L, d]
    (weight [d, 1, K], bias [d]): one Triton kernel each way; K a power of two."""
    if triton is None:
        raise RuntimeError("causal_conv_silu: triton is not installed")
    return _conv_fwd_op(x, weight.reshape(weight.shape[0], weight.shape[-1]).contiguous(), bias)[0]


def selective_scan(u, delta, A, B, C, D, z, delta_bias):
    """The Triton fast path of :func:`selective_scan_ref` (same arguments, output in u's dtype).
    n (A.shape[1]) must be a power of two; the last dimension of every input contiguous."""
    if triton is None:
        raise RuntimeError("selective_scan: triton is not installed")
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    save = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    return _scan_fwd_op(u, delta, A.float().contiguous(), B, C, D.float().contiguous(), z,
                        delta_bias.float().contiguous(), save)[0]
