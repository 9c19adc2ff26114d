#!/usr/bin/env bash
# The compression study on the best-preset small VGG and ResNet-20 (trained first if missing),
# split over the two cores of this CPU (one single-threaded process each), then int8 and the
# timing of every study on the quiet machine, then the summary.
# Resumable: a finished study is reused (run_study.py), so an interrupted run.sh just restarts.
#   benchmarks/compression/run.sh DATA_DIR [OUT]
# The compressed models stay in OUT (default runs/compression, not committed); the summary
# (study.md/json) and every study's report.{md,json} and config go to benchmarks/compression/results/.
set -euo pipefail
data=${1:?usage: run.sh DATA_DIR [OUT]}
out=${2:-runs/compression}
here=$(cd "$(dirname "$0")" && pwd)
best=runs/fashion_mnist/best/runs
mkdir -p "$out"
# The two models to compress: trained here unless runs/fashion_mnist/best already holds them
# (compare reuses finished runs and resumes interrupted ones).
cnnlab compare --preset best --models vgg_small,resnet20 --data-dir "$data" --jobs 2 \
    --out runs/fashion_mnist/best --no-report
study=(python "$here/run_study.py" --data-dir "$data" --vgg "$best/vgg_small/seed0"
       --resnet "$best/resnet20/seed0" --threads 1 --out "$out")
# Two halves of about the same single-core time (distillation trains a student for the
# teacher's 30 epochs; the binary networks train 5 VGG epochs each). --only runs its studies
# in the order given: the ones that decide a target first.
OMP_NUM_THREADS=1 "${study[@]}" --only resnet-distill vgg-binary-binaryconnect vgg-binary-bnn \
    vgg-binary-xnor vgg-binary-xnor-inputs > "$out.a.log" 2>&1 &
a=$!
OMP_NUM_THREADS=1 "${study[@]}" --only vgg-prune-kmeans vgg-lowrank vgg-filters-l1 \
    vgg-filters-apoz vgg-filters-taylor vgg-kmeans-vs-pq resnet-prune resnet-filters-l1 \
    resnet-student-scratch > "$out.b.log" 2>&1 &
b=$!
trap 'kill $a $b 2>/dev/null' EXIT
wait $a
wait $b
trap - EXIT
# int8 is a speed claim: run it with nothing else running; then time every study's saved
# models again on the quiet machine (the halves above were timed beside each other).
OMP_NUM_THREADS=1 "${study[@]}" --only vgg-int8 resnet-int8
OMP_NUM_THREADS=1 "${study[@]}" --retime
# Reuses every study; writes the full summary and copies it, with every study's report and
# config, to results/ (the compressed models stay in OUT).
OMP_NUM_THREADS=1 "${study[@]}" --publish "$here/results"
