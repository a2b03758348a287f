#!/usr/bin/env bash
# Extraction on the GPU machine (issue 11, point 3): the default command beside the tuned rows and
# the peer-style pipeline, 128 inputs of 60-s 640x360 video (16 different videos), then the default
# command once more on the same inputs (interpreter, libraries and videos warm in the page cache):
#   SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_extract_default.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step extract_throughput 420 python3 benchmarks/extract_throughput.py --K 128 --distinct 16 \
  --workers 16 --peer-videos 8 --stage-videos 4 --work-dir /tmp/xb --json "$OUT/extract.json"
step extract_default_again 90 bash -c 'rm -rf /tmp/xb2; TIMEFORMAT="wall %R s"; time (python3 \
  cli.py extract --videos /tmp/xb/inputs --out /tmp/xb2/feats.h5 --clip-weights random \
  --vggish-weights random --quiet | grep -E "seconds|extracted now")'
grep -E "^=== |^\| |videos/s|seconds|wall|rc=" "$OUT/all.log" | head -60
