#!/usr/bin/env bash
# The GPU checks of one device session, in one go: CUDA tests (fast path, metrics on device tensors, AMP training
# steps, prediction) and `segkit bench backbone` on CUDA. Writes its logs and JSON to $OUT.
# Missing packages travel as wheels in .whl/ (see the device notes); segkit runs from the checkout.
set -uo pipefail
OUT=${OUT:-/tmp/segkit-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, segmentation_models_pytorch as smp, albumentations as A; \
print('torch', torch.__version__, 'timm', timm.__version__, 'smp', smp.__version__, 'albumentations', A.__version__)" \
  | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"
python3 -m segkit bench backbone --device cuda --repeats 20 --throughput-batch 32 --throughput-size 512 \
  --train-batch 16 --train-size 512 --json "$OUT/backbone_cuda.json" 2>&1 | tee "$OUT/bench_cuda.txt"
