"""VGGish on the CPU in torchvggish's layout and channels-last (what ``VGGishEncoder`` runs
there), float32 and bf16 weights, one process, the same seeded network and input:

    python benchmarks/vggish_layout.py [--patches 60] [--repeats 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import print_table  # noqa: E402
from extract.vggish import VGGishEncoder  # noqa: E402
from extract.weights import resolve_vggish_weights  # noqa: E402


def seconds(model, x, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        y = model(x)  # warm-up: oneDNN picks and caches its kernels
        t = time.perf_counter()
        for _ in range(repeats):
            y = model(x)
    return (time.perf_counter() - t) / repeats, y.float()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patches", type=int, default=60, help="96x64 log-mel patches (60 = one video)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    for precision in ("fp32", "bf16"):
        enc = VGGishEncoder(resolve_vggish_weights("random:0"), device="cpu", precision=precision)
        library = copy.deepcopy(enc.model).to(memory_format=torch.contiguous_format)
        x = torch.randn(args.patches, 1, 96, 64, generator=torch.Generator().manual_seed(0)).to(enc.dtype)
        ref_s, ref = seconds(library, x, args.repeats)
        fast_s, got = seconds(enc.model, x.contiguous(memory_format=torch.channels_last), args.repeats)
        diff = float((got - ref).abs().max() / ref.abs().max())
        rows.append([precision, f"{ref_s:.3f}", f"{fast_s:.3f}", f"{ref_s / fast_s:.2f}", f"{diff:.1e}"])
    print_table(f"VGGish on the CPU, {args.patches} patches ({torch.get_num_threads()} threads)",
                ["weights", "torchvggish layout s", "channels-last s", "speed-up", "max rel diff"],
                rows, args.json)
    return {"rows": rows}


if __name__ == "__main__":
    main()
