#!/usr/bin/env bash
# GPU run of BENCHMARKS.md §A (issue 11): training throughput (the default command beside the tuned
# rows and the peer-style path, which uses mamba-ssm: build it) and the batch-64 step profile:
#   source .whl/remote_setup.sh && bash benchmarks/gpu_train.sh "$OUT"
set -u
OUT=${1:-/tmp/gpu_out}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_step.sh"
B=/tmp/bench
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/card.txt" | tee -a "$OUT/all.log"
step make_store 90 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 330 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 1024 4096 --samplers question video --steps 15 --peer-steps 40 --default-epochs 3 --json "$OUT/train.json"
step profile_64 60 python3 benchmarks/profile_step.py $B/feats.h5 --batch-size 64 --top 12 --graph-only
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
