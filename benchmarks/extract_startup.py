"""Where the extract command's start-up goes before its first video can be encoded, in a fresh
process: importing torch and open_clip, the device's first use, building the encoders (with the
20 costliest calls under cProfile), as ``python cli.py extract`` does with random weights:

    python benchmarks/extract_startup.py [--device cuda] [--clip-model ViT-B-32]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--clip-model", default="ViT-B-32")
    ap.add_argument("--top", type=int, default=20, help="calls listed from the profile (0 = none)")
    args = ap.parse_args(argv)
    times, t = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name], t = now - t, now

    import torch
    lap("import torch")
    from extract.clip_models import import_open_clip
    from extract.config import ExtractConfig
    from extract.encoders import build_encoders
    import_open_clip(args.clip_model)
    lap("import open_clip + our extract modules")
    cfg = ExtractConfig(videos=".", out="unused.h5", clip_model=args.clip_model, clip_weights="random",
                        vggish_weights="random", device=args.device)
    from common.device import resolve_device
    device = resolve_device(cfg.device)
    torch.zeros(1, device=device).sum().item()
    lap(f"first use of {device}")
    prof = cProfile.Profile()
    prof.enable()
    build_encoders(cfg)
    prof.disable()
    lap("build the encoders (weights, models, probes)")
    for name, s in times.items():
        print(f"| {name} | {s:.2f} s |")
    print(f"| total | {sum(times.values()):.2f} s |")
    if args.top:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
    return times


if __name__ == "__main__":
    main()
