#!/usr/bin/env bash
# GPU figures in one short run on the device machine (torch + transformers only, no weights downloaded):
#   bash bench/gpu.sh [shape]      shape: 0.5b or 1b (default 1b); results in $OUT/gpu.json (or bench/results/)
# The tokenizer comes from bench/gpu_tokenizer/ (copied there by `make gpu-tokenizer`, about 3 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
shape="${1:-1b}"
out="${OUT:-bench/results}"
mkdir -p "$out"
nvidia-smi -L || true
timeout 540 python bench/bench_gpu.py --tokenizer bench/gpu_tokenizer --shape "$shape" --device cuda \
  --out "$out/gpu.json"
