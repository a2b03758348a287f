#!/usr/bin/env bash
# The scan backward after its relaxed atomics and prefetched states (run e): the GPU tests, where
# the default step's time goes (compare _scan_bwd with run e's first profile), the default command,
# then which child module makes the bf16 compiled step wrong:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_scan_check.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_tests 240 python3 -m pytest -q -x tests/gpu
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step profile_default 120 python3 benchmarks/profile_step.py $B/feats.h5 --graph-only --top 60
step train_default 150 python3 cli.py train --store $B/feats.h5 --epochs 3 --out /tmp/runs \
  --name default --no-progress
cp /tmp/runs/default/metrics.jsonl "$OUT/metrics_default.jsonl" 2>/dev/null
for part in align temporal fusion audio_enc head; do
  step "compile_check_$part" 100 python3 benchmarks/compile_check.py --amp bf16 --part $part --rounds 3
done
grep -E "^=== |agree|DISAGREE|passed|failed|wall .* ms/step|QA/s" "$OUT/all.log"
