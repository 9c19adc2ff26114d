#!/usr/bin/env bash
# Put what the GPU machine needs beside the checkout into gpu_carry/ (issue 23): only the
# working tree travels to the device machine, not ../shared. gpu_carry/ is ignored through
# .git/info/exclude (one line, added here once) and must be named in the run's `carry`.
#   bash benchmarks/gpu/prepare.sh [SHARED_DIR]     # default: ../shared beside the checkout
set -euo pipefail
cd "$(dirname "$0")/../.."
shared="${1:-../shared}"
for need in "$shared/data/fashion-mnist/train-images-idx3-ubyte.gz" "$shared/anchors/gpu_plain.py"; do
  [[ -f "$need" ]] || { echo "prepare.sh: $need not found (pass the shared folder)" >&2; exit 1; }
done
exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/gpu_carry/' "$exclude" 2>/dev/null || echo '/gpu_carry/' >> "$exclude"
rm -rf gpu_carry
mkdir -p gpu_carry/data/fashion-mnist gpu_carry/anchors
cp "$shared"/data/fashion-mnist/*-ubyte.gz gpu_carry/data/fashion-mnist/
cp "$shared"/anchors/*.py "$shared"/anchors/README.md gpu_carry/anchors/
git check-ignore -q gpu_carry/anchors/gpu_plain.py || { echo "prepare.sh: gpu_carry/ is not ignored" >&2; exit 1; }
du -sh gpu_carry
echo "carry: [\"gpu_carry\"]; run: bash benchmarks/gpu/run.sh"
