#!/usr/bin/env bash
# The parallel (associative-scan) Triton kernels: their GPU tests, both kernels timed side by
# side, then the default `train` command beside the mamba-ssm peer over 200 steps (mamba-ssm
# built, so no SKIP_MAMBA_BUILD):
#   source .whl/remote_setup.sh && bash benchmarks/gpu_scan_parallel.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_tests 150 python3 -m pytest -q -x tests/gpu/test_gpu_model.py tests/gpu/test_gpu_step.py \
  -k "scan_kernels or triton or (eager_steps and False)"
step scan_kernels 60 python3 benchmarks/scan_kernels.py --json "$OUT/scan.json"
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 300 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 \
  --samplers question --step graph --steps 15 --peer-steps 200 --default-epochs 3 \
  --json "$OUT/train.json"
grep -E "^=== |^\| |^best|passed|failed|rc=" "$OUT/all.log"
