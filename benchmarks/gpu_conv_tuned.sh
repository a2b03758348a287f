#!/usr/bin/env bash
# The convolution kernels autotuned (tile and warps; one program per sequence in the backward):
# the Triton GPU tests, the default `train` command beside the mamba-ssm peer over 200 steps
# (mamba-ssm built, so no SKIP_MAMBA_BUILD), then where the compiled default step's time goes:
#   source .whl/remote_setup.sh && bash benchmarks/gpu_conv_tuned.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_tests 90 python3 -m pytest -q -x tests/gpu/test_gpu_model.py -k triton
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 240 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 \
  --samplers question --step graph --steps 15 --peer-steps 200 --default-epochs 3 \
  --json "$OUT/train.json"
step profile_regions 60 python3 benchmarks/profile_step.py $B/feats.h5 --graph-only \
  --compile regions --top 30
grep -E "^=== |^\| |^best|passed|failed|wall .* ms/step|rc=" "$OUT/all.log"
