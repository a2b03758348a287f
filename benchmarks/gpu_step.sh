# Sourced by benchmarks/gpu_*.sh at their top: the output folder $OUT (the script's first argument),
# the benchmark store's folder $B, the card and core count in $OUT/all.log and card_<script>.txt,
# and `step NAME SECONDS COMMAND...`, which runs one measurement under its own time limit and
# appends its whole output to $OUT/all.log (the device tool returns at most 8 files).
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
  timeout "$secs" "$@" > "/tmp/$name.log" 2>&1; echo "rc=$?" >> "/tmp/$name.log"
  cat "/tmp/$name.log" >> "$OUT/all.log"
}
