"""What importing torch and open_clip (as extraction imports it) costs, module by module, in a
fresh process: ``python -X importtime`` read back, the modules above ``--min`` seconds
(cumulative), indented by depth.

    python benchmarks/import_cost.py [--clip-model ViT-B-32] [--min 0.1] [--depth 6]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def main(argv: list[str] | None = None) -> list[tuple[float, int, str]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip-model", default="ViT-B-32")
    ap.add_argument("--min", type=float, default=0.1, help="seconds (cumulative) a module must cost")
    ap.add_argument("--depth", type=int, default=6, help="deepest nesting shown")
    args = ap.parse_args(argv)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import torch;"
            "from extract.clip_models import import_open_clip; import_open_clip(sys.argv[2])")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code, str(ROOT), args.clip_model],
                          capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        m = LINE.match(line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            rows.append((int(m.group(2)) / 1e6, depth, m.group(4)))
    shown = [r for r in rows if r[0] >= args.min and r[1] <= args.depth]
    for sec, depth, name in shown:   # importtime lists a module after its children
        print(f"{sec:7.3f} s  {'  ' * depth}{name}")
    top = [r for r in rows if r[1] == 0]
    print(f"total of top-level imports: {sum(r[0] for r in top):.2f} s")
    return shown


if __name__ == "__main__":
    main()
