#!/usr/bin/env bash
# Regional compilation (train.step.COMPILE_REGIONS, now with the question encoder and the fusion
# block's methods, each right under bf16 alone in run f's bisect), call 1 of 2: the regions against
# eager and float32, the train command as a user types it, 3 epochs, without and with
# `--set compile=regions` (the first epoch shows what compiling costs), the GPU step test with it:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_regions_speed.sh "$OUT"
# Call 2 (mamba-ssm built, the peer row in the same run): benchmarks/gpu_regions_vs_peer.sh
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step compile_check_regions 150 python3 benchmarks/compile_check.py --amp bf16 --part regions \
  --rounds 4 --vs-fp32
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
for run in default:compile=false regions:compile=regions; do
  name=${run%%:*}
  step "train_$name" 200 python3 cli.py train --store $B/feats.h5 --epochs 3 --out /tmp/runs \
    --name "$name" --no-progress --set "${run#*:}"
  cp /tmp/runs/$name/metrics.jsonl "$OUT/metrics_$name.jsonl" 2>/dev/null
done
step gpu_step_test 200 python3 -m pytest -q -s tests/gpu/test_gpu_step.py -k "eager_steps and regions"
grep -E "^=== |agree|DISAGREE|^\| [0-9]|passed|failed|QA/s|rc=" "$OUT/all.log" | head -60
