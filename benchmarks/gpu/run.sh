#!/usr/bin/env bash
# The whole GPU check of issue 23 on one GPU in at most 8 minutes, results in $OUT (at most 8
# files: results.json, results.md, env.txt, tests.log, tests_cuda.log, steps.log, profile.txt).
#
#   bash benchmarks/gpu/prepare.sh                 # here, once: data + anchors -> gpu_carry/
#   run (device tool): command "bash benchmarks/gpu/run.sh", carry ["gpu_carry"]
#   bash benchmarks/gpu/run.sh --dry-run           # here, on the CPU: every step, tiny
#
# Extra arguments go to gpu_check.py (--only STEPS, --skip STEPS, --budget S, --epochs N, ...).
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
OUT="${OUT:-runs/gpu_check/out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OUT
PY="${PYTHON:-python3}"
if [[ " $* " != *" --dry-run "* ]]; then
  # The GPU machine has torch and the rest but no registry: install cnnlab alone, editable.
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/steps.log" 2>&1 \
    || echo "pip install failed (see steps.log); using PYTHONPATH=src" | tee -a "$OUT/steps.log"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # works installed or not
BUDGET=$(( ${GPU_CHECK_BUDGET:-470} - ($(date +%s) - START) ))
"$PY" benchmarks/gpu/gpu_check.py --carry gpu_carry --out "$OUT" --budget "$BUDGET" "$@"
rc=$?
echo "gpu check: exit $rc after $(( $(date +%s) - START )) s; results in $OUT/results.md"
exit $rc
