#!/usr/bin/env bash
# GPU run of BENCHMARKS.md §F (issue 15): `ask` latency on one 60-s 640x360 25 fps video, the cold
# command and with the models loaded, on a freshly built 4-video synthetic dataset (synth ->
# extract -> train 1 epoch, ~1 min on a 16-core H100 host; ~2.5 min in all). mamba-ssm is not
# needed (the default backend on CUDA is the Triton scan):
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_ask.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
W=/tmp/askbench
step ask_latency 300 python3 benchmarks/ask_latency.py --device cuda --repeats 5 --cold-runs 2 --workdir $W --json "$OUT/ask.json"
cp $W/build.log "$OUT/ask_build.log" 2>/dev/null
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
