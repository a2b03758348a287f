"""Scaling in sequence length: fwd+bwd time and peak memory of SHMamba for growing T,
temporal = mamba vs transformer, in the same run.

    python benchmarks/scaling.py [--T 60 240 960 3840 15360] [--batch 8] [--plot scaling.png]

On CUDA the model runs under bf16 autocast with the mamba-ssm backend when importable; on the CPU
use small sizes (``--T 16 32 --batch 2 --d-model 32``).  Out-of-memory is reported as ``OOM``.
"""
from __future__ import annotations

import argparse
import time

import torch

from benchlib import device_name, pick_device, print_table, sync  # noqa: E402  (adds repo to path)
from model import build_model  # noqa: E402


def measure(variant: str, T: int, args, device: torch.device) -> tuple[float | None, float | None]:
    torch.manual_seed(0)
    model = build_model(variant, audio_dim=128, visual_dim=args.visual_dim, text_dim=args.text_dim,
                        n_answers=42, d_model=args.d_model, dropout=0.0, backend=args.backend).to(device)
    B = args.batch
    audio = torch.randn(B, T, 128, device=device)
    visual = torch.randn(B, T, args.visual_dim, device=device)
    question = torch.randn(B, args.text_dim, device=device)
    labels = torch.randint(0, 42, (B,), device=device)
    amp = device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(audio, visual, question)
            loss = torch.nn.functional.cross_entropy(out.logits.float(), labels) + out.align_loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    try:
        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        t = time.perf_counter()
        for _ in range(args.iters):
            step()
        sync(device)
        ms = (time.perf_counter() - t) / args.iters * 1e3
        mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        return ms, mem
    except torch.OutOfMemoryError:
        return None, None
    finally:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main(argv=None) -> list[list]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[60, 240, 960, 3840, 15360])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--visual-dim", type=int, default=512)
    ap.add_argument("--text-dim", type=int, default=512)
    ap.add_argument("--variants", nargs="+", default=["shmamba", "transformer"])
    ap.add_argument("--backend", default="auto", help="Mamba backend: auto | mamba-ssm | mambapy")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--plot", default=None, help="write a PNG plot of time and memory vs T")
    ap.add_argument("--json", default=None, help="write the table as JSON")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    rows, results = [], {}
    for T in args.T:
        row = [T]
        for v in args.variants:
            ms, mem = measure(v, T, args, device)
            results[(v, T)] = (ms, mem)
            row += ["OOM" if ms is None else f"{ms:.2f}", "-" if mem is None else f"{mem:.0f}"]
        rows.append(row)
    cols = ["T"] + [f"{v} {k}" for v in args.variants for k in ("ms fwd+bwd", "peak MiB")]
    print_table(f"Scaling in T - batch {args.batch}, d_model {args.d_model} - {device_name(device)}",
                cols, rows, json_out=args.json)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for v in args.variants:
            ts = [T for T in args.T if results[(v, T)][0] is not None]
            axes[0].loglog(ts, [results[(v, T)][0] for T in ts], "o-", label=v)
            if device.type == "cuda":
                axes[1].loglog(ts, [results[(v, T)][1] for T in ts], "o-", label=v)
        axes[0].set(xlabel="T (segments)", ylabel="fwd+bwd ms", title="time")
        axes[1].set(xlabel="T (segments)", ylabel="peak MiB", title="memory")
        for ax in axes:
            ax.legend()
            ax.grid(True, which="both", alpha=0.3)
        fig.suptitle(device_name(device))
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return rows


if __name__ == "__main__":
    main()
