#!/usr/bin/env bash
# GPU run B of BENCHMARKS.md (issue 11): extraction, the default command beside the tuned rows and
# the peer-style pipeline, 128 generated 60-s 640x360 videos:
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_extract.sh "$OUT"
set -u
OUT=${1:-/tmp/gpu_out}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_step.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/card_extract.txt" | tee -a "$OUT/all.log"
nproc | tee -a "$OUT/all.log"
step extract_throughput 560 python3 benchmarks/extract_throughput.py --K 128 --workers 16 --peer-videos 32 --stage-videos 8 --json "$OUT/extract.json"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$OUT/all.log"
