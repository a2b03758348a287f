"""Mamba backends: our Triton scan and mamba-ssm (fused CUDA selective scan) vs mambapy (pure
PyTorch), same run.

    python benchmarks/backends.py [--batch 64] [--T 60] [--iters 20] [--json out.json]

Builds the model (``--variant``, default SHMamba config plus ``--model`` overrides) with the
mambapy backend, copies its weights into a mamba-ssm model (the two backends share parameter
names and shapes, so one state_dict serves both), and reports for each backend the time per
fwd + bwd step (bf16 autocast on CUDA unless ``--amp off``) and peak memory, plus the logits'
max absolute and relative difference from mambapy with the same weights and inputs (float32,
eval mode).  Without CUDA or an importable ``mamba_ssm`` the mamba-ssm row says why it was
skipped.

CPU smoke run: ``--batch 2 --T 8 --iters 1 --warmup 0 --model d_model=16``.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from benchlib import device_name, pick_device, print_table, sync  # noqa: E402  (adds repo to path)
from train_throughput import parse_model_overrides  # noqa: E402


def make_inputs(cfg, V: int, T: int, device: torch.device, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {"audio": torch.randn(V, T, cfg.audio_dim, generator=gen),
           "visual": torch.randn(V, T, cfg.visual_dim, generator=gen),
           "question": torch.randn(V, cfg.text_dim, generator=gen),
           "answer": torch.randint(0, max(cfg.n_answers, 1), (V,), generator=gen)}
    return {k: v.to(device) for k, v in out.items()}


def time_fwd_bwd(model, x: dict, device: torch.device, amp: bool, warmup: int, iters: int
                 ) -> tuple[float | None, float | None]:
    """(ms per fwd + bwd step, peak MiB on CUDA) or (None, None) on out-of-memory."""
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x["audio"], x["visual"], x["question"])
        loss = F.cross_entropy(out.logits.float(), x["answer"]) + out.align_loss.float()
        loss.backward()
        model.zero_grad(set_to_none=True)

    try:
        for _ in range(warmup):
            step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            step()
        sync(device)
        ms = (time.perf_counter() - t) / iters * 1e3
        mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        return ms, mem
    except torch.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return None, None


@torch.no_grad()
def logits_fp32(model, x: dict) -> torch.Tensor:
    model.eval()
    return model(x["audio"], x["visual"], x["question"]).logits.float()


def fast_row(backend: str, cfg, ref, ref_logits, ms_ref, x, device, amp, args):
    """One fast backend with the reference's weights: (table row, results)."""
    from model import build_model, load_state, resolve_backend

    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    note = "skipped: needs CUDA (this run is on the CPU)" if device.type != "cuda" else None
    if note is None:
        try:
            resolve_backend(backend, cfg.d_state, cfg.d_conv)
        except RuntimeError as exc:
            note = f"skipped: {exc}"
    if note is not None:
        return [backend, "-", "-", "-", "-", "-", note], {"skipped": note}
    fast = build_model(cfg, seed=args.seed + 1, backend=backend).to(device)
    load_state(fast, ref.state_dict())
    fast_logits = logits_fp32(fast, x)
    diff = (fast_logits - ref_logits).abs().max().item()
    rel = diff / max(ref_logits.abs().max().item(), 1e-30)
    ms, mem = time_fwd_bwd(fast, x, device, amp, args.warmup, args.iters)
    speed = f"{ms_ref / ms:.2f}" if ms and ms_ref else "-"
    return ([backend, fmt(ms, ".2f") if ms else "OOM", fmt(mem, ".0f"), speed, f"{diff:.3g}",
             f"{rel:.3g}", "same weights as mambapy"],
            {"ms": ms, "peak_mib": mem, "max_abs_diff": diff, "max_rel_diff": rel})


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="shmamba", help="model variant (model.VARIANTS)")
    ap.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE",
                    help="SHMambaConfig overrides, e.g. d_model=64 n_layers=2")
    ap.add_argument("--batch", type=int, default=64, help="videos (= questions) per step")
    ap.add_argument("--T", type=int, default=60, help="segments per video")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps")
    ap.add_argument("--iters", type=int, default=20, help="timed steps")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                    help="timing precision: auto = bf16 autocast on CUDA, none on CPU")
    ap.add_argument("--seed", type=int, default=0, help="weights and inputs seed")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.T < 1 or args.iters < 1:
        ap.error("--batch, --T and --iters must be >= 1")

    from model import build_model, variant_config

    device = pick_device(args.device)
    dev_name = device_name(device)
    overrides = parse_model_overrides(args.model)
    overrides.pop("backend", None)
    cfg = variant_config(args.variant, **{"dropout": 0.0, **overrides})
    if cfg.temporal != "mamba":
        ap.error(f"variant {args.variant!r} has no Mamba blocks (temporal={cfg.temporal!r})")
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    x = make_inputs(cfg, args.batch, args.T, device, args.seed)

    ref = build_model(cfg, seed=args.seed, backend="mambapy").to(device)
    ref_logits = logits_fp32(ref, x)
    ms_ref, mem_ref = time_fwd_bwd(ref, x, device, amp, args.warmup, args.iters)

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    rows = [["mambapy", fmt(ms_ref, ".2f") if ms_ref else "OOM", fmt(mem_ref, ".0f"), "1.00",
             "0", "0", "reference"]]
    results = {"mambapy": {"ms": ms_ref, "peak_mib": mem_ref}}
    for backend in ("triton", "mamba-ssm"):
        row, results[backend] = fast_row(backend, cfg, ref, ref_logits, ms_ref, x, device, amp, args)
        rows.append(row)
    meta = {"device": dev_name, "variant": args.variant, "model": cfg.to_dict(), "batch": args.batch,
            "T": args.T, "amp": "bf16" if amp else "off", "iters": args.iters, "results": results}
    print_table(f"Mamba backends - {args.variant}, batch {args.batch}, T={args.T}, d_model "
                f"{cfg.d_model}, {'bf16' if amp else 'fp32'} fwd+bwd - {dev_name}",
                ["backend", "ms fwd+bwd", "peak MiB", "speed-up vs mambapy",
                 "max abs logit diff (fp32)", "max rel diff", "note"], rows,
                json_out=args.json, meta=meta)
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
