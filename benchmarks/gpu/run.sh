#!/usr/bin/env bash
# Issue 18's GPU suite on a bare GPU machine, in one command: install the wheels carried in
# .whl/ (made here by `python benchmarks/gpu/prepare.py`) and grokviz itself (a wheel built from
# this checkout), run benchmarks/gpu_suite.py, and leave gpu_suite.json and gpu_suite.log in
# $OUT (default ./gpu-results). Arguments go to the suite: `--small` is the CPU dry run.
#
# With the device tool: command `bash benchmarks/gpu/run.sh`, carry [".whl"], timeout_s 600.
# The suite stops itself after GROKVIZ_GPU_TIMEOUT seconds (default 540), keeping what it wrote.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$REPO/gpu-results}
SITE=${GROKVIZ_GPU_SITE:-/tmp/grokviz-site}
BUILD=$(mktemp -d)
mkdir -p "$OUT" "$SITE"
cd "$REPO"
shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "no wheels in $REPO/.whl: run 'python benchmarks/gpu/prepare.py' here first, then carry .whl" >&2
  exit 2
fi
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "${wheels[@]}"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# grokviz from this checkout as a wheel (hatchling came with the carried wheels)
python3 -m pip wheel -q --no-index --no-deps --no-build-isolation -w "$BUILD" "$REPO"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$BUILD"/grokviz-*.whl
echo "installed ${#wheels[@]} carried wheels and $(basename "$BUILD"/grokviz-*.whl) in $(( $(date +%s) - start )) s"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv \
    | tee "$OUT/nvidia-smi.csv"
fi
# run from elsewhere, so that grokviz is imported from the installed wheel, not the checkout
cd "$BUILD"
set +e
timeout "${GROKVIZ_GPU_TIMEOUT:-540}" python3 "$REPO/benchmarks/gpu_suite.py" \
  --json "$OUT/gpu_suite.json" "$@" 2>&1 | tee "$OUT/gpu_suite.log"
status=${PIPESTATUS[0]}
set -e
echo "suite exit status $status; results in $OUT (gpu_suite.json, gpu_suite.log)"
exit "$status"
