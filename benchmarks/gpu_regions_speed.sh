#!/usr/bin/env bash
# Regional compilation (train.step.COMPILE_REGIONS, right under bf16 in run e): the GPU step test
# with it (12 steps vs eager), then how fast the CUDA-graph step runs with it, with recompiles
# logged, and the batch-64 and best rows beside the uncompiled ones; with mamba-ssm built, the
# mamba-ssm peer-style row in the same run:
#   source .whl/remote_setup.sh && bash benchmarks/gpu_regions_speed.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_step_test 300 python3 -m pytest -q -s tests/gpu/test_gpu_step.py -k "eager_steps"
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step profile_regions 300 env TORCH_LOGS=recompiles python3 benchmarks/profile_step.py $B/feats.h5 \
  --graph-only --top 30 --compile regions
step train_regions 300 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 4096 \
  --samplers question video --step graph --steps 15 --peer-steps 40 --default-epochs 3 \
  --compile regions --json "$OUT/train_regions.json"
grep -E "^=== |passed|failed|wall .* ms/step|Recompiling|^\| " "$OUT/all.log" | head -60
