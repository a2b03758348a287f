# Sourced by benchmarks/gpu_*.sh at their top: the output folder $OUT (the script's first argument),
# the benchmark store's folder $B, the card and core count in $OUT/all.log and card_<script>.txt,
# and `step NAME SECONDS COMMAND...`, which runs one measurement under its own time limit and
# appends its output to $OUT/all.log as it comes (the device tool returns at most 8 files).
set -u
OUT=${1:-/tmp/gpu_out}
B=/tmp/bench
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader \
  | tee "$OUT/card_$(basename "$0" .sh).txt" | tee -a "$OUT/all.log"
nproc | tee -a "$OUT/all.log"
step() {
  local name=$1 secs=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S))" | tee -a "$OUT/all.log"
  # straight into all.log: a call cut at the device budget still returns what ran
  timeout "$secs" "$@" >> "$OUT/all.log" 2>&1; echo "rc=$?" >> "$OUT/all.log"
}
