#!/usr/bin/env bash
# `bench pretrain` at the paper size on one CUDA GPU: every method eager in bf16, then SimCroP and MAE compiled.
# Needs no data (a two-case CT-RATE twin is written to the cache) and no network; finishes in under 8 minutes
# (each command is capped so that the whole script stays inside that budget). Run from the repository root:
#   bash scripts/gpu-bench-pretrain.sh            # or: sbatch --gres=gpu:1 --time=00:10:00 scripts/gpu-bench-pretrain.sh
set -euo pipefail
export SIMCROP_BENCH_CACHE="${SIMCROP_BENCH_CACHE:-${TMPDIR:-/tmp}/simcrop-bench-gpu-cache}"
PYTHON="${PYTHON:-python}"
bench=("$PYTHON" -m simcrop_bench.cli bench pretrain --profile paper --device cuda --precision bf16)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 200 "${bench[@]}" --warmup 3 --steps 10
timeout 260 "${bench[@]}" --compile --method simcrop --method mae --warmup 3 --steps 10
