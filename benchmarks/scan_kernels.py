"""The two Triton selective-scan kernels side by side (model/scan.py): the parallel one (an
associative scan over time, the default for L <= PARALLEL_MAX_L) and the chunked sequential one,
forward and forward + backward, at the default model's shape (a batch of 64 videos, audio and
visual through the shared stack: 128 sequences of 60 steps, 512 inner channels, 16 states),
with both kernels' largest differences from the float32 reference:

    python benchmarks/scan_kernels.py [--batch 128 --steps 60 --channels 512 --states 16]
        [--dtype bf16] [--iters 50] [--json out.json]

On a machine without CUDA it runs in Triton's interpreter (TRITON_INTERPRET=1, tiny sizes only).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import print_table  # noqa: E402
from model.scan import selective_scan, selective_scan_ref  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def inputs(b: int, L: int, d: int, n: int, dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    xs = [r(b, L, d), r(b, L, d) * 0.5, -torch.rand(d, n, generator=g) * 3 - 0.1, r(b, L, n),
          r(b, L, n), r(d), r(b, L, d), r(d) * 0.3]
    return [(x.to(dtype) if i in (0, 1, 3, 4, 6) else x).to(device).requires_grad_()
            for i, x in enumerate(xs)]


def seconds(fn, iters: int, device: str) -> float:
    fn()  # warm-up: autotuning and compilation
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def worst_diff(xs, dy, parallel: bool, ref) -> float:
    y = selective_scan(*xs, parallel=parallel)
    got = [y.detach(), *torch.autograd.grad(y, xs, dy)]
    return max(float((a.float() - r).abs().max() / r.abs().max().clamp_min(1e-30))
               for a, r in zip(got, ref))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128, help="sequences (videos x 2 modalities)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--channels", type=int, default=512, help="Mamba inner width")
    ap.add_argument("--states", type=int, default=16)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="activations' dtype")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    xs = inputs(args.batch, args.steps, args.channels, args.states, DTYPES[args.dtype], device)
    dy = torch.randn(args.batch, args.steps, args.channels, device=device).to(xs[0].dtype)
    xr = [x.detach().float().requires_grad_() for x in xs]
    yr = selective_scan_ref(*xr)
    ref = [yr, *torch.autograd.grad(yr, xr, dy.float())]
    rows = []
    for parallel in (True, False):
        def fwd():
            with torch.no_grad():
                selective_scan(*xs, parallel=parallel)

        def fwd_bwd():
            torch.autograd.grad(selective_scan(*xs, parallel=parallel), xs, dy)

        f, fb = seconds(fwd, args.iters, device), seconds(fwd_bwd, args.iters, device)
        rows.append(["parallel (associative scan)" if parallel else "chunked (sequential)",
                     f"{f * 1e3:.3f}", f"{fb * 1e3:.3f}", f"{worst_diff(xs, dy, parallel, ref):.1e}"])
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU, Triton interpreter"
    print_table(f"selective scan, {args.batch} x {args.steps} steps x {args.channels} channels x "
                f"{args.states} states, {args.dtype} - {card}",
                ["kernel", "forward ms", "forward + backward ms", "max rel diff vs fp32 reference"],
                rows, args.json)
    return {"rows": rows}


if __name__ == "__main__":
    main()
