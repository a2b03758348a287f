"""Where a training step's GPU time goes: ``torch.profiler`` over the eager step and the CUDA-graph
step of ``train.step`` at one batch size, kernels grouped by name.

    python benchmarks/profile_step.py STORE/feats.h5 [--batch-size 64] [--steps 20] [--top 25]

Prints, per path: wall ms per step, summed kernel ms per step, kernels per step, and the kernels
that take the most time.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from types import SimpleNamespace

import torch
from torch.profiler import ProfilerActivity, profile

from benchlib import (device_name, pick_device, print_table, refuse_compile_with_autocast,  # noqa: E402
                      sync)  # (adds repo to path)
from train_throughput import batch_index_lists, model_config_for_store, our_step  # noqa: E402


def build(data, model_cfg, device, args, graph: bool):
    """``step(k)`` of the training step, as the training benchmark builds it (lr 1e-4, alignment
    weight 0.1, clipping 1.0, bf16 autocast on CUDA)."""
    settings = SimpleNamespace(lr=1e-4, align_weight=0.1, grad_clip=1.0, amp=args.amp, split="train",
                               compile=args.compile)
    idx = batch_index_lists(data, "train", args.batch_size, 2 * args.steps + 8, 0, args.sampler)
    return our_step(data, model_cfg, device, settings, idx, graph)


def measure(call, device, args) -> tuple[float, dict]:
    for k in range(6):
        call(k)
    sync(device)
    t = time.perf_counter()
    for k in range(6, 6 + args.steps):
        call(k)
    sync(device)
    wall = (time.perf_counter() - t) / args.steps
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for k in range(6 + args.steps, 6 + 2 * args.steps):
            call(k)
        sync(device)
    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            kernels[ev.name][0] += 1
            kernels[ev.name][1] += ev.device_time_total / 1000.0
    return wall * 1000, kernels


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--sampler", default="question", choices=["question", "video"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--compile", default="none", choices=["graph", "all", "regions", "none"],
                    help="where the model is torch.compile-d (as benchmarks/train_throughput.py)")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                    help="auto = bf16 autocast on CUDA (compiling needs off)")
    ap.add_argument("--graph-only", action="store_true", help="profile only the CUDA-graph step")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    from train.data import StoreData, open_store

    device = pick_device(args.device)
    refuse_compile_with_autocast(ap, args.compile, args.amp, device)
    store = open_store(args.store)
    model_cfg = model_config_for_store(store, "shmamba", {})
    data = StoreData(store, ["train"], device, with_tokens=False)
    for graph in (True,) if args.graph_only else (False, True):
        wall, kernels = measure(build(data, model_cfg, device, args, graph), device, args)
        total = sum(v[1] for v in kernels.values()) / args.steps
        count = sum(v[0] for v in kernels.values()) / args.steps
        name = "CUDA-graph" if graph else "eager"
        rows = [[k[:90], f"{v[0] / args.steps:.1f}", f"{v[1] / args.steps:.3f}"]
                for k, v in sorted(kernels.items(), key=lambda kv: -kv[1][1])[:args.top]]
        print_table(f"{name} step, batch {args.batch_size} ({args.sampler}) - {device_name(device)}: "
                    f"wall {wall:.2f} ms/step, kernels {total:.2f} ms/step, {count:.0f} kernels/step",
                    ["kernel", "calls/step", "ms/step"], rows)


if __name__ == "__main__":
    main()
