"""Where the extract command's start-up goes before its first batch is encoded, each case in a
fresh process, as ``python cli.py extract`` does it: import torch, (start the GPU warm-up),
import open_clip and our modules, first use of the device, build the encoders, encode one
batch (frames, audio patches, questions).  Cases, side by side in one run:

* weights: ``random`` (seeded random init, the tests' and demo's weights) or ``files`` (seeded
  random weights saved once to files and loaded from them, as the default weights are loaded from
  the hub cache: no random init);
* warm-up: off or on (``extract/warmup.py``, a thread started after importing torch).

    python benchmarks/extract_startup.py [--device cuda] [--clip-model ViT-B-32] [--repeats 2]
        [--json out.json] [--top 20]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHASES = ("import torch", "import open_clip + our modules", "first use of the device",
          "build the encoders", "first batch", "total")


def child(args: argparse.Namespace) -> dict:
    """One fresh-process start-up; prints and returns the seconds of each phase."""
    times, t = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name], t = now - t, now

    import torch
    warm = None
    if args.warmup:
        from extract.warmup import start_warmup
        warm = start_warmup(args.device, "auto", args.clip_model)
    lap("import torch")
    from extract.clip_models import import_open_clip
    from extract.config import ExtractConfig
    from extract.encoders import build_encoders
    import_open_clip(args.clip_model)
    lap("import open_clip + our modules")
    clip_w, vggish_w = ("random", "random") if args.weights == "random" else args.weights.split(",")
    cfg = ExtractConfig(videos=".", out="unused.h5", clip_model=args.clip_model, clip_weights=clip_w,
                        vggish_weights=vggish_w, device=args.device)
    from common.device import resolve_device
    device = resolve_device(cfg.device)
    torch.zeros(1, device=device).sum().item()
    lap("first use of the device")
    prof = cProfile.Profile()
    prof.enable()
    enc = build_encoders(cfg)
    prof.disable()
    if warm is not None:
        warm.join()
    lap("build the encoders")
    import numpy as np
    from extract.config import encoder_batch_size
    n = encoder_batch_size(cfg, device.type)
    enc.clip.encode_images(np.zeros((n, enc.clip.image_size, enc.clip.image_size, 3), np.uint8))
    enc.audio.encode(np.zeros((n, 96, 64), np.float32))
    enc.clip.encode_text(["How many instruments are sounding?"] * 8)
    lap("first batch")
    times["total"] = sum(times.values())
    if args.top:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(args.top)
    print(json.dumps(times))
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--clip-model", default="ViT-B-32")
    ap.add_argument("--repeats", type=int, default=2, help="fresh processes per case")
    ap.add_argument("--top", type=int, default=0, help="calls listed from the build's profile")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--weights", default="random", help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    from benchlib import print_table
    from extract_throughput import save_weight_files  # numpy: not in the timed children

    with tempfile.TemporaryDirectory(prefix="startup-weights-") as folder:
        files = ",".join(save_weight_files(Path(folder), args.clip_model))
        rows, results = [], {}
        for weights, shown in (("random", "random"), (files, "files")):
            for warm in (0, 1):
                runs = []
                for _ in range(args.repeats):
                    cmd = [sys.executable, __file__, "--child", "--weights", weights, "--warmup",
                           str(warm), "--device", args.device, "--clip-model", args.clip_model,
                           "--top", str(args.top)]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
                    if args.top:
                        print(out.stderr, file=sys.stderr)
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                case = f"weights {shown}, warm-up {'on' if warm else 'off'}"
                results[case] = runs
                rows.append([case] + [" / ".join(f"{r[p]:.2f}" for r in runs) for p in PHASES])
    title = f"extract start-up, fresh processes (s; {args.repeats} runs each), device {args.device}"
    cols = ["case"] + list(PHASES)
    print_table(title, cols, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "columns": cols, "rows": rows,
                                               "runs": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
