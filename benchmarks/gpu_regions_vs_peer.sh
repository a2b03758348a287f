#!/usr/bin/env bash
# Regional compilation, call 2 of 2 (after gpu_regions_speed.sh showed it right and fast): the
# batch-64 row compiled by regions (each row compiles anew, about a minute), the default command,
# and the peer-style path on mamba-ssm, in one run:
#   source .whl/remote_setup.sh && bash benchmarks/gpu_regions_vs_peer.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_regions 420 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 \
  --samplers question --step graph --steps 15 --peer-steps 40 --default-epochs 3 \
  --compile regions --json "$OUT/train.json"
grep -E "^=== |^\| " "$OUT/all.log" | head -30
