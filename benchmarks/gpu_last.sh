#!/usr/bin/env bash
# The 2026-11-28 H200 run (issue 11 and 15), in one device call, most important first, without
# mamba-ssm (the peer-style row runs our default Mamba kernel: --peer-backend same):
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_last.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_64 230 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 --samplers question --step graph --compile graph --peer-backend same --peer-steps 40 --default-epochs 3 --json "$OUT/train.json"
step train_best 80 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 4096 --samplers video --step graph --compile graph --skip-peer --default-epochs 0 --steps 10 --json "$OUT/train_best.json"
step ask_latency 150 python3 benchmarks/ask_latency.py --device cuda --repeats 5 --cold-runs 1 --workdir /tmp/askbench --json "$OUT/ask.json"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
