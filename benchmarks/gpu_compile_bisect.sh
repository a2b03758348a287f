#!/usr/bin/env bash
# Which part of the model makes the bf16 compiled step wrong (run d, docs/TRAINING.md): the whole
# model without the alignment mask, then each child module compiled alone:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_compile_bisect.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step compile_check_no_mask 150 python3 benchmarks/compile_check.py --amp bf16 --no-mask
for part in align temporal fusion audio_enc head; do
  step "compile_check_$part" 120 python3 benchmarks/compile_check.py --amp bf16 --part $part
done
grep -E "^=== |agree|DISAGREE" "$OUT/all.log"
