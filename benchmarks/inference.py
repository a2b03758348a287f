"""Test-split inference time: every question of ``--split`` predicted by SHMamba, data included.

    python benchmarks/inference.py STORE/feats.h5 [--split test] [--batch-sizes 0 4096 1024]
        [--repeats 10] [--json out.json]

The split's videos and questions are first put on the device (``train.data.StoreData``; that
load is reported but not counted, like a trainer's resident arrays).  Each timed run is one call
of ``train.predict.predict`` (what evaluation runs): eval mode, no grad, bf16 autocast on CUDA
(``--amp``), batches gathered from the resident arrays, each distinct video run once per batch,
argmax to host memory.  ``--batch-sizes`` 0 = the whole split in one batch; a batch that does
not fit in device memory is halved until it does (the row says which size ran).  Weights are
random (``--seed``): the time does not depend on their values.

Goal: < 0.5 s for the 9,129 MUSIC-AVQA test questions on one H100.
CPU smoke run: ``--batch-sizes 0 8 --repeats 1 --warmup 0 --model d_model=16``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchlib import device_name, pick_device, print_table, sync  # noqa: E402  (adds repo to path)
from train_throughput import model_config_for_store, parse_model_overrides  # noqa: E402

GOAL_S = 0.5


def time_predict(model, data, split: str, batch_size: int, amp: str, warmup: int,
                 repeats: int) -> tuple[list[float], int]:
    """Seconds of each timed prediction of the split (``train.predict.Predictor``, as validation
    and ``eval`` run it: on CUDA a captured graph, captured during the warm-up), and the batch
    size that ran (halved on OOM)."""
    from train.predict import Predictor

    device = data.device
    while True:
        try:
            predict = Predictor(model, data, batch_size, amp)
            for _ in range(max(warmup, 1 if predict.graphs else 0)):
                predict(split)
            times = []
            for _ in range(repeats):
                sync(device)
                t = time.perf_counter()
                pred = predict(split)
                sync(device)
                times.append(time.perf_counter() - t)
            if len(pred.pred) != len(data.splits[split]):
                raise RuntimeError(f"predict returned {len(pred.pred)} predictions for "
                                   f"{len(data.splits[split])} questions")
            return times, batch_size
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size <= 1:
                raise
            batch_size = max(1, batch_size // 2)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", help="feature store entry file (e.g. made by make_store.py)")
    ap.add_argument("--split", default="test", help="split to predict")
    ap.add_argument("--variant", default="shmamba", help="model variant (model.VARIANTS)")
    ap.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE",
                    help="SHMambaConfig overrides, e.g. d_model=64 backend=mambapy")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[0, 4096, 1024],
                    help="questions per batch, one row each (0 = the whole split)")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per row")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                    help="auto = bf16 autocast on CUDA, none on CPU")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--memory-budget-mb", type=float, default=0.0,
                    help="device memory for resident data (0 = half of what is free)")
    ap.add_argument("--seed", type=int, default=0, help="model init seed")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    from model import build_model, resolve_backend
    from train.data import StoreData, open_store

    device = pick_device(args.device)
    dev_name = device_name(device)
    store = open_store(args.store)
    model_cfg = model_config_for_store(store, args.variant, parse_model_overrides(args.model))
    t = time.perf_counter()
    data = StoreData(store, [args.split], device, with_tokens=bool(model_cfg.use_tokens),
                     memory_budget_mb=args.memory_budget_mb)
    sync(device)
    t_load = time.perf_counter() - t
    n = len(data.splits[args.split])
    model = build_model(model_cfg, seed=args.seed).to(device).eval()
    run = torch.compile(model) if args.compile else model

    rows, best = [], None
    for bs in args.batch_sizes:
        want = n if bs <= 0 else min(bs, n)
        times, ran = time_predict(run, data, args.split, want, args.amp, args.warmup, args.repeats)
        med, low = statistics.median(times), min(times)
        best = med if best is None else min(best, med)
        rows.append([args.split, n, "all" if bs <= 0 else bs, ran, f"{med:.4f}", f"{low:.4f}",
                     f"{n / med:,.0f}", f"{med * 9129 / n:.4f}"])
    meta = {
        "device": dev_name, "store": str(args.store), "split": args.split, "questions": n,
        "videos": len(data), "variant": args.variant, "model": model_cfg.to_dict(), "amp": args.amp,
        "compile": args.compile, "repeats": args.repeats, "warmup": args.warmup,
        "backend": resolve_backend(model_cfg.backend, model_cfg.d_state, model_cfg.d_conv)[0] if model_cfg.temporal == "mamba" else None,
        "data_load_s": round(t_load, 3), "data_fully_resident": data.fully_resident,
        "best_median_s": best, "goal": f"< {GOAL_S} s for 9,129 test QA on one H100",
    }
    print_table(f"Inference ({args.split} split, {n:,} QA, data from resident arrays) - "
                f"{args.variant}, amp={args.amp}{', compiled' if args.compile else ''} - {dev_name}",
                ["split", "QA", "batch asked", "batch ran", "median s", "best s", "QA/s",
                 "s per 9,129 QA"], rows, json_out=args.json, meta=meta)
    scaled = best * 9129 / n
    print(f"fastest median: {best:.4f} s for {n:,} QA ({scaled:.4f} s scaled to 9,129 QA; goal "
          f"< {GOAL_S} s: {'met' if scaled < GOAL_S else 'missed'} on {dev_name}); data to device "
          f"{t_load:.2f} s (not counted)")
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
