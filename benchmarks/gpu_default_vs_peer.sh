#!/usr/bin/env bash
# The default `train` command beside the peer-style path on mamba-ssm and the tuned rows, one call
# (run e; mamba-ssm built, so no SKIP_MAMBA_BUILD):
#   source .whl/remote_setup.sh && bash benchmarks/gpu_default_vs_peer.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 300 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 4096 \
  --samplers question video --step graph --steps 15 --peer-steps 40 --default-epochs 3 \
  --json "$OUT/train.json"
grep -E "^=== |QA/s|peer|default" "$OUT/all.log" | head -40
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
