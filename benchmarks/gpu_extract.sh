#!/usr/bin/env bash
# GPU run B of BENCHMARKS.md (issue 11): inference and the step profile on the store of run A (made
# again if this is a fresh machine), then extraction: the default command beside the tuned rows and
# the peer-style pipeline, 128 inputs of 60-s 640x360 video (16 different videos, each input
# decoded in full):
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_extract.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
[ -f $B/feats.h5 ] || step make_store 90 python3 benchmarks/make_store.py --out $B/feats.h5
step inference 40 python3 benchmarks/inference.py $B/feats.h5 --json "$OUT/inference.json"
step profile_64 40 python3 benchmarks/profile_step.py $B/feats.h5 --batch-size 64 --top 12
step extract_throughput 400 python3 benchmarks/extract_throughput.py --K 128 --distinct 16 --workers 16 --peer-videos 32 --stage-videos 8 --json "$OUT/extract.json"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
