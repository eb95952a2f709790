#!/usr/bin/env bash
# Every GPU figure of benchmarks/RESULTS.md in one go: bash benchmarks/gpu.sh
# Needs torch with CUDA, and zarr, numcodecs, ome-zarr and dask importable (on a machine
# without them: pip install --no-index --no-deps --target /tmp/site <wheels>; PYTHONPATH=/tmp/site).
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$(cd .. && pwd)/workflow${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python train.py --device cuda
python predict.py --device cuda --slices 64
