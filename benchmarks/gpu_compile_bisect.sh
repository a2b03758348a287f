#!/usr/bin/env bash
# Why the bf16 compiled step is wrong (runs d and e, docs/TRAINING.md): which side is far from the
# float32 gradients, whether inductor rounding its fused intermediates as eager does
# (emulate_precision_casts) makes the two agree, then each child module compiled alone; last, where
# the uncompiled default step's GPU time goes:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_compile_bisect.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step compile_check_vs_fp32 150 python3 benchmarks/compile_check.py --amp bf16 --vs-fp32
step compile_check_emulate 150 python3 benchmarks/compile_check.py --amp bf16 --vs-fp32 \
  --option emulate_precision_casts=true
for part in align temporal fusion audio_enc head; do
  step "compile_check_$part" 120 python3 benchmarks/compile_check.py --amp bf16 --part $part
done
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step profile_default 120 python3 benchmarks/profile_step.py $B/feats.h5 --graph-only --top 40
grep -E "^=== |agree|DISAGREE" "$OUT/all.log"
