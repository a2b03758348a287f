# Sourced by benchmarks/gpu_*.sh: `step NAME SECONDS COMMAND...` runs one measurement under its own
# time limit and appends its whole output to $OUT/all.log (the device tool returns at most 8 files).
export PYTHONUNBUFFERED=1
step() {
  local name=$1 secs=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S))" | tee -a "$OUT/all.log"
  timeout "$secs" "$@" > "/tmp/$name.log" 2>&1; echo "rc=$?" >> "/tmp/$name.log"
  cat "/tmp/$name.log" >> "$OUT/all.log"
}
