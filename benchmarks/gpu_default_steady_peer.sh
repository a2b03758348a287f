#!/usr/bin/env bash
# The default `train` command (compile = auto: regions) beside the peer-style path on mamba-ssm
# timed over 200 steps (40 in runs e/f, where its 16 prefetched batches were a large share), then
# the GPU test of the default train command with resume (mamba-ssm built, no SKIP_MAMBA_BUILD):
#   source .whl/remote_setup.sh && bash benchmarks/gpu_default_steady_peer.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 300 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 \
  --samplers question --step graph --steps 15 --peer-steps 200 --default-epochs 3 \
  --json "$OUT/train.json"
grep -E "^\| |^best" "$OUT/all.log"
step gpu_train_test 200 python3 -m pytest -q -x tests/gpu/test_gpu_step.py -k "train_command"
grep -E "^=== |passed|failed|rc=" "$OUT/all.log"
