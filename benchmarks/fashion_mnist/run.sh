#!/usr/bin/env bash
# The full Fashion-MNIST study: both presets on the full data set, two trainings at a time
# (one core each on a 2-core CPU), results and reports copied next to this script.
#   benchmarks/fashion_mnist/run.sh ../shared/data [case-study best]
set -euo pipefail
data=${1:?usage: run.sh DATA_DIR [PRESET ...]}
shift
presets=${*:-case-study best}
here=$(cd "$(dirname "$0")" && pwd)
for preset in $presets; do
  out=runs/fashion_mnist/$preset
  cnnlab compare --preset "$preset" --data-dir "$data" --jobs 2 --out "$out"
  mkdir -p "$here/$preset"
  cp "$out"/results.md "$out"/results.json "$out"/results.csv "$out"/report.html "$here/$preset/"
done
