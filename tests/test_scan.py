"""The Triton selective scan (fast path) against the sequential reference, and the Triton Mamba
block against mambapy's block with the same weights: values and gradients.  On this CPU machine
the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set in a child process because it
must be set before triton is imported); on the GPU, tests/gpu/test_gpu_step.py runs them compiled."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import torch
    from mambapy.mamba import MambaBlock, MambaConfig
    from model.scan import selective_scan, selective_scan_ref
    from model.ssm import TritonMambaBlock

    torch.manual_seed(0)
    worst = 0.0
    def check(name, a, r, tol):
        global worst
        err = float((a - r).abs().max() / r.abs().max().clamp_min(1e-30))
        assert err <= tol, (name, err)
        worst = max(worst, err)

    # the scan: d = 40 is not a multiple of the channel block (masking); L = 9 ends in a partial
    # checkpoint chunk (CHUNK = 8), L = 16 fills two, L = 3 is shorter than one
    for L in (9, 16, 3):
        b, d, n = 3, 40, 4
        xs = [torch.randn(b, L, d), torch.randn(b, L, d) * 0.5, -torch.rand(d, n) * 3 - 0.1,
              torch.randn(b, L, n), torch.randn(b, L, n), torch.randn(d), torch.randn(b, L, d),
              torch.randn(d) * 0.3]
        with torch.no_grad():  # inference: no checkpoints kept
            check("y no grad", selective_scan(*xs), selective_scan_ref(*xs), 1e-5)
        xs = [x.requires_grad_() for x in xs]
        y, yr = selective_scan(*xs), selective_scan_ref(*xs)
        check("y", y, yr, 1e-5)
        g = torch.randn_like(y)
        for name, a, r in zip("u delta A B C D z bias".split(), torch.autograd.grad(y, xs, g),
                              torch.autograd.grad(yr, xs, g)):
            check(f"{name} L={L}", a, r, 1e-5)

    # the block: same weights as mambapy's; (2, 11, 16): one convolution tile; (1, 20, 40): two
    # time tiles (BT = 16 in CONV_FIXED) and two channel tiles (BD = 64 < 80 inner channels),
    # both partial
    for b, L, dm in ((2, 11, 16), (1, 20, 40)):
        cfg = MambaConfig(d_model=dm, n_layers=1, d_state=8, expand_factor=2, d_conv=4)
        ref, fast = MambaBlock(cfg), TritonMambaBlock(cfg)
        fast.load_state_dict(ref.state_dict())
        x = torch.randn(b, L, dm, requires_grad=True)
        out_f, out_r = fast(x), ref(x)
        check("block", out_f, out_r, 1e-5)
        go = torch.randn_like(out_r)
        out_f.backward(go)
        grads_f = {k: p.grad.clone() for k, p in fast.named_parameters()}
        gx_f = x.grad.clone(); x.grad = None
        out_r.backward(go)
        check(f"block dx L={L}", gx_f, x.grad, 1e-4)
        for k, p in ref.named_parameters():
            check(f"block d{k} L={L}", grads_f[k], p.grad, 1e-4)

    # the custom ops' registrations (schema, fake tensors, autograd, AOT dispatch) ...
    b, L, d, n = 1, 3, 8, 4
    xs = [torch.randn(b, L, d), torch.randn(b, L, d) * 0.5, -torch.rand(d, n) * 3 - 0.1,
          torch.randn(b, L, n), torch.randn(b, L, n), torch.randn(d), torch.randn(b, L, d),
          torch.randn(d) * 0.3]
    torch.library.opcheck(torch.ops.shmamba.scan_fwd.default,
                          [x.clone().requires_grad_() for x in xs] + [True])
    torch.library.opcheck(torch.ops.shmamba.conv_fwd.default,
                          (torch.randn(b, L, d, requires_grad=True),
                           torch.randn(d, 4, requires_grad=True), torch.randn(d, requires_grad=True)))
    # ... so torch.compile keeps each kernel one opaque call: the compiled block's gradients
    # are the eager block's
    cfg = MambaConfig(d_model=8, n_layers=1, d_state=4, expand_factor=2, d_conv=4)
    fast = TritonMambaBlock(cfg)
    x = torch.randn(1, 5, 8)
    grads = []
    for m in (fast, torch.compile(fast, backend="aot_eager", fullgraph=True)):
        fast.zero_grad(set_to_none=True)
        m(x).square().sum().backward()
        grads.append({k: p.grad.clone() for k, p in fast.named_parameters()})
    for k in grads[0]:
        check(f"compiled block d{k}", grads[1][k], grads[0][k], 1e-6)
    print(f"OK worst relative error {worst:.2e}")
''')


def test_triton_scan_and_block_match_the_references_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK worst relative error" in proc.stdout
