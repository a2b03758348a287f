#!/usr/bin/env bash
# Why the whole compiled model is wrong under bf16 when its regions are right (runs d, e;
# docs/TRAINING.md): the regions leave out the fusion block, which the model calls through its
# methods; compile each method of it alone (per_question gathers each question's video rows, whose
# backward accumulates into them), then the whole model with its distance from float32:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_compile_bisect.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
for part in fusion:per_question fusion:per_video fusion; do
  step "compile_check_${part/:/_}" 120 python3 benchmarks/compile_check.py --amp bf16 --part $part \
    --rounds 4 --vs-fp32
done
step compile_check_all 150 python3 benchmarks/compile_check.py --amp bf16 --rounds 4 --vs-fp32
grep -E "^=== |agree|DISAGREE|^\| [0-9]" "$OUT/all.log"
