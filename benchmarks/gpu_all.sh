#!/usr/bin/env bash
# GPU run 1 of BENCHMARKS.md in one call on the device machine (mamba-ssm build + benchmarks; the GPU
# model test tests/gpu/ was run separately), each step under its own time limit so one slow step cannot take the others down.
#   source .whl/remote_setup.sh && bash benchmarks/gpu_all.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 110 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 256 1024 2048 4096 --steps 15 --peer-steps 20 --json "$OUT/train.json"
step inference 25 python3 benchmarks/inference.py $B/feats.h5 --json "$OUT/inference.json"
step backends 25 python3 benchmarks/backends.py --json "$OUT/backends.json"
step scaling 50 python3 benchmarks/scaling.py --T 60 240 960 3840 15360 --batch 8 --iters 2 --warmup 1 --plot "$OUT/scaling.png" --json "$OUT/scaling.json"
step extract_throughput 80 python3 benchmarks/extract_throughput.py --K 16 --workers 8 16 --json "$OUT/extract.json"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
