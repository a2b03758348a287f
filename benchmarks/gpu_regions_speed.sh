#!/usr/bin/env bash
# Regional compilation (train.step.COMPILE_REGIONS, right under bf16 in run e), call 1 of 2: the
# GPU step test with it (12 steps vs eager), the CUDA-graph step's profile with it (recompiles
# logged), and the train command as a user types it, 3 epochs, without and with
# `--set compile=regions` (the first epoch shows what compiling costs):
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_regions_speed.sh "$OUT"
# Call 2 (mamba-ssm built, the peer row in the same run): benchmarks/gpu_regions_vs_peer.sh
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_step_test 300 python3 -m pytest -q -s tests/gpu/test_gpu_step.py -k "eager_steps"
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step profile_regions 240 env TORCH_LOGS=recompiles python3 benchmarks/profile_step.py $B/feats.h5 \
  --graph-only --top 30 --compile regions
for run in default:compile=false regions:compile=regions; do
  name=${run%%:*}
  step "train_$name" 240 python3 cli.py train --store $B/feats.h5 --epochs 3 --out /tmp/runs \
    --name "$name" --no-progress --set "${run#*:}"
  cp /tmp/runs/$name/metrics.jsonl "$OUT/metrics_$name.jsonl" 2>/dev/null
done
grep -E "^=== |passed|failed|wall .* ms/step|Recompiling|QA/s" "$OUT/all.log" | head -60
