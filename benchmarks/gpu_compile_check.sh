#!/usr/bin/env bash
# Whether `compile` is right and worth it (docs/TRAINING.md): compiled vs eager gradients round
# after round (benchmarks/compile_check.py, bf16 and float32, and bf16 with inductor's mix-order
# reductions on as in run d), the GPU step tests, then the default
# command for 3 epochs against `--set compile=true amp=off` and `--set amp=off`, loss curves printed:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_compile_check.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
for amp in bf16 off; do  # with train's inductor options (no mix-order reductions)
  step "compile_check_$amp" 150 python3 benchmarks/compile_check.py --amp $amp --json "$OUT/compile_check_$amp.json"
done
step compile_check_bf16_mix_order 150 python3 benchmarks/compile_check.py --amp bf16 \
  --option triton.mix_order_reduction=true  # run d's configuration
step gpu_step_tests 240 python3 -m pytest -q -s tests/gpu/test_gpu_step.py
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
for run in default:amp=auto fp32_compiled:compile=true,amp=off fp32:amp=off; do
  name=${run%%:*}; sets=(); IFS=, read -ra kv <<< "${run#*:}"
  for s in "${kv[@]}"; do sets+=(--set "$s"); done
  step "train_$name" 150 python3 cli.py train --store $B/feats.h5 --epochs 3 --out /tmp/runs \
    --name "$name" --no-progress "${sets[@]}"
  cp /tmp/runs/$name/metrics.jsonl "$OUT/metrics_$name.jsonl" 2>/dev/null
done
python3 - "$OUT" <<'PY' | tee -a "$OUT/all.log"
import json, sys
from pathlib import Path
for name in ("default", "fp32_compiled", "fp32"):
    p = Path(sys.argv[1]) / f"metrics_{name}.jsonl"
    rows = [json.loads(x) for x in p.read_text().splitlines()] if p.is_file() else []
    print(f"{name}: " + "; ".join(f"epoch {r['epoch']} ce {r['ce']:.4f} align {r['align']:.4f} "
                                  f"{r['qa_per_s']:.0f} QA/s" for r in rows))
PY
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
