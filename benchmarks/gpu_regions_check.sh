#!/usr/bin/env bash
# Regional compilation (train.step.COMPILE_REGIONS compiled one by one) under bf16: right (compiled
# vs eager gradients, round after round, and vs float32) and how fast (the CUDA-graph step's
# profile, batch 64); run e:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_regions_check.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step compile_check_regions 110 python3 benchmarks/compile_check.py --amp bf16 --part regions \
  --rounds 4 --vs-fp32
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step profile_regions 100 python3 benchmarks/profile_step.py $B/feats.h5 --graph-only --top 30 \
  --compile regions
grep -E "^=== |agree|DISAGREE|wall .* ms/step|^\| [0-9]" "$OUT/all.log"
