#!/usr/bin/env bash
# The default `train` command beside the peer-style path on mamba-ssm and the tuned rows, one call
# (runs e, f, which timed 40 peer steps, now 200; mamba-ssm built, so no SKIP_MAMBA_BUILD); then
# the default command once more, whose first epoch shows what compiling costs with a warm cache:
#   source .whl/remote_setup.sh && bash benchmarks/gpu_default_vs_peer.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
[ -f $B/feats.h5 ] || step make_store 60 python3 benchmarks/make_store.py --out $B/feats.h5
step train_throughput 360 python3 benchmarks/train_throughput.py $B/feats.h5 --batch-sizes 64 4096 \
  --samplers question video --step graph --steps 15 --peer-steps 200 --default-epochs 3 \
  --json "$OUT/train.json"
step train_default_warm 120 python3 cli.py train --store $B/feats.h5 --set stop_after=2 --out /tmp/runs \
  --name warm --no-progress
cp /tmp/runs/warm/train.log "$OUT/train_warm.log" 2>/dev/null
grep -E "^=== |QA/s|peer|default|rc=" "$OUT/all.log" | head -40
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
