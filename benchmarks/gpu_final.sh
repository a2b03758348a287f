#!/usr/bin/env bash
# GPU run A of BENCHMARKS.md (issue 11): GPU tests, training throughput (the default command beside
# the tuned rows and the peer-style path) and the Mamba backends, in one call on the device machine
# (mamba-ssm built: the peer-style row and the backend table use it):
#   source .whl/remote_setup.sh && bash benchmarks/gpu_final.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_tests 120 python3 -m pytest -q -s tests/gpu/
step make_store 90 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 220 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 1024 4096 --samplers question video --steps 15 --peer-steps 40 --default-epochs 3 --json "$OUT/train.json"
step backends 40 python3 benchmarks/backends.py --json "$OUT/backends.json"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
