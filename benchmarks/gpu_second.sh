#!/usr/bin/env bash
# Second GPU call (2026-11-26): training throughput with the video-grouped sampler next to the
# shuffled one and the peer path, then extraction throughput with more time than gpu_all.sh gave it.
#   source .whl/remote_setup.sh && bash benchmarks/gpu_second.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 120 python3 benchmarks/train_throughput.py $B/feats.h5 --samplers question video --batch-sizes 1024 4096 --steps 15 --peer-steps 20 --json "$OUT/train.json"
step extract_throughput 230 python3 benchmarks/extract_throughput.py --K 16 --workers 16 --warmup 1 --stage-videos 4 --json "$OUT/extract.json"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
