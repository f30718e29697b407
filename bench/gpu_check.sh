#!/usr/bin/env bash
# GPU check (bench/gpu_check.py --help says what it runs): train, decode, resume and torchrun on the GPU.
#   bench/gpu_check.sh [--out runs/gpu_check] [--updates 300] [--data DIR] [--device cpu]
exec python3 "$(dirname "$0")/gpu_check.py" "$@"
