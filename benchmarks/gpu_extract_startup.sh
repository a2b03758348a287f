#!/usr/bin/env bash
# Extraction start-up on the GPU machine (issue 11, point 3): the GPU tests of extraction, whether
# Python has bytecode caches here, the import costs module by module (as the host is, then with a
# bytecode cache as pip leaves one), the start-up phases in fresh processes (weights random / from files x warm-up off / on), then the
# default command over 128 inputs of 60-s 640x360 video beside the tuned rows and the peer-style
# pipeline, with random weights and with weight files, then the default command once more warm and the
# encoders' build profiled (weight files, warm-up on):
#   (prepare.sh with EXTRA_WHEELS=av) SKIP_MAMBA_BUILD=1 source .whl/remote_setup.sh && bash benchmarks/gpu_extract_startup.sh "$OUT"
source "$(dirname "$0")/gpu_step.sh"  # set -u, $OUT (= $1), $B, the card
step gpu_tests 120 python3 -m pytest -q tests/gpu/test_gpu_extract.py
# does this host's Python find bytecode caches for its packages (pip writes them at install)?
step pyc_check 30 python3 -c 'import sys, os, glob, torch, torch._dynamo as d
p = os.path.dirname(d.__file__); tag = sys.implementation.cache_tag
print("dont_write_bytecode", sys.flags.dont_write_bytecode, "pycache_prefix", sys.pycache_prefix)
print("torch/_dynamo:", len(glob.glob(p + "/*.py")), "py,", len(glob.glob(p + f"/__pycache__/*.{tag}.pyc")), "pyc;", "writable", os.access(p, os.W_OK))'
step import_cost_as_is 60 python3 benchmarks/import_cost.py --min 0.15 --depth 12
# the rest with a bytecode cache, as a pip-installed environment has (pip byte-compiles at install)
export PYTHONPYCACHEPREFIX=/tmp/pycache
step compileall 200 python3 -m compileall -q -j 16 /opt/torch/.venv/lib/python3.12/site-packages /tmp/site .
step import_cost 60 python3 benchmarks/import_cost.py --min 0.15 --depth 12
step startup 240 python3 benchmarks/extract_startup.py --device cuda --repeats 2 --json "$OUT/startup.json"
step extract_throughput 420 python3 benchmarks/extract_throughput.py --K 128 --distinct 16 \
  --workers 16 --peer-videos 8 --stage-videos 4 --file-weights-row --work-dir /tmp/xb \
  --json "$OUT/extract.json"
step extract_default_again 90 bash -c 'rm -rf /tmp/xb2; TIMEFORMAT="wall %R s"; time (python3 \
  cli.py extract --videos /tmp/xb/inputs --out /tmp/xb2/feats.h5 --clip-weights \
  /tmp/xb/weights/clip.safetensors --vggish-weights /tmp/xb/weights/vggish.pt --quiet \
  | grep -E "seconds|extracted now")'
for i in 1; do step build_profile_$i 60 python3 benchmarks/extract_startup.py --child --warmup 1 \
  --weights /tmp/xb/weights/clip.safetensors,/tmp/xb/weights/vggish.pt --device cuda --top 30; done
grep -E "^=== |^\| |videos/s|seconds|wall|rc=|passed|failed|dont_write|_dynamo:|total of top" "$OUT/all.log" | head -80
