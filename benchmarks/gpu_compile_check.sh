#!/usr/bin/env bash
# What decides whether `compile` becomes the training default (docs/TRAINING.md): the GPU tests
# (compiled CUDA-graph step vs the eager step, the fallback), then the default command for 3 epochs
# on the benchmark store with and without compile, whose loss curves must agree as closely as two
# uncompiled runs do (alignment loss 4.171 -> 4.053 -> 3.999 on every uncompiled run so far):
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_compile_check.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_step_tests 240 python3 -m pytest -q -s tests/gpu/test_gpu_step.py
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
for c in false true; do
  step "train_compile_$c" 120 python3 cli.py train --store $B/feats.h5 --epochs 3 --out /tmp/runs \
    --name "compile_$c" --no-progress --set compile=$c
  cp /tmp/runs/compile_$c/metrics.jsonl "$OUT/metrics_compile_$c.jsonl" 2>/dev/null
done
python3 - "$OUT" <<'PY' | tee -a "$OUT/all.log"
import json, sys
from pathlib import Path
for c in ("false", "true"):
    p = Path(sys.argv[1]) / f"metrics_compile_{c}.jsonl"
    rows = [json.loads(x) for x in p.read_text().splitlines()] if p.is_file() else []
    print(f"compile={c}: " + "; ".join(f"epoch {r['epoch']} ce {r['ce']:.4f} align {r['align']:.4f} "
                                       f"{r['qa_per_s']:.0f} QA/s" for r in rows))
PY
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
