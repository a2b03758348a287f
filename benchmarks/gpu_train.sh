#!/usr/bin/env bash
# GPU run for the training step (issue 11): GPU tests, profile, throughput with the default command.
#   source .whl/remote_setup.sh && bash benchmarks/gpu_train.sh "$OUT"
set -u
OUT=${1:-/tmp/gpu_out}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_step.sh"
B=/tmp/bench
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/all.log"
step gpu_tests 150 python3 -m pytest -q -s -x tests/gpu/
step make_store 90 python3 benchmarks/make_store.py --out $B/feats.h5
step profile_64 60 python3 benchmarks/profile_step.py $B/feats.h5 --batch-size 64 --top 30
step train_throughput 300 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 1024 4096 --samplers question video --steps 15 --peer-steps 30 --default-epochs 3 --json "$OUT/train.json"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
