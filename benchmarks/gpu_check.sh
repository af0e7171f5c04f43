#!/usr/bin/env bash
# The GPU checks of one device session, in one go: CUDA tests (fast path, split padding, bf16 auto precision,
# metrics on device tensors, AMP training steps, prediction, cuDNN's fused convolutions), which inference engines
# the machine has besides PyTorch (TensorRT, ONNX Runtime's CUDA provider), `segkit bench predict --networks
# --device cuda` (every shipped network at bs1, eager against segkit's fast path), `segkit bench backbone` on CUDA
# (BACKBONE=1) and `benchmarks/gap.py` (what Res2Net-50's throughput gap to ResNet-50 is made of, and the attempts
# to close it, cuDNN's fused convolution + bias + ReLU among them).
# Writes its logs and JSON to $OUT. Missing packages travel as wheels in .whl/ (see the device notes); segkit
# runs from the checkout.
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
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, segmentation_models_pytorch as smp, albumentations as A; \
print('torch', torch.__version__, 'timm', timm.__version__, 'smp', smp.__version__, 'albumentations', A.__version__, \
'cudnn', torch.backends.cudnn.version())" | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"
{ python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 | tail -1
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>&1 | tail -1
  echo "libnvinfer in ldconfig: $(ldconfig -p | grep -c libnvinfer)"
  echo "libnvinfer files: $(find / -xdev -name 'libnvinfer*.so*' 2>/dev/null | head -3 | tr '\n' ' ')"
} | tee -a "$OUT/gpu.txt"
timeout 200 python3 -m segkit bench predict --networks --device cuda --rounds 20 \
  --json "$OUT/networks_cuda.json" 2>&1 | tee "$OUT/networks_cuda.txt"
[ "${BACKBONE:-0}" = 1 ] && timeout 200 python3 -m segkit bench backbone --device cuda --variants res2net50_26w_4s --repeats 20 \
  --throughput-batch 32 --throughput-size 512 --train-batch 16 --train-size 512 \
  --json "$OUT/backbone_cuda.json" 2>&1 | tee "$OUT/bench_cuda.txt"
# GAP=cudnn: only the attempts with splits padded to 16, cuDNN's fused convolutions and their like-for-like
# baselines among them; GAP=eager (the default, to fit one device call of 10 minutes): every attempt except compilation, and the
# convolution table, no profile; GAP=full: everything; GAP=compile: only the compiled attempts and the profiles
if [ "${GAP:-eager}" = cudnn ]; then
  timeout 200 python3 benchmarks/gap.py --device cuda --batch 32 --size 512 --repeats 20 --compile-modes none \
    --no-profile --only "padded to 16" --json "$OUT/gap_cudnn.json" 2>&1 | tee "$OUT/gap_cudnn.txt"
  timeout 100 python3 benchmarks/gap.py --device cuda --batch 1 --size 512 --repeats 50 --compile-modes none \
    --no-profile --only "padded to 16" --json "$OUT/gap_cudnn_bs1.json" 2>&1 | tee "$OUT/gap_cudnn_bs1.txt"
elif [ "${GAP:-eager}" = eager ]; then
  timeout 240 python3 benchmarks/gap.py --device cuda --batch 32 --size 512 --repeats 20 --compile-modes none \
    --no-profile --json "$OUT/gap_cuda.json" 2>&1 | tee "$OUT/gap_cuda.txt"
elif [ "$GAP" = full ]; then
  timeout 420 python3 benchmarks/gap.py --device cuda --batch 32 --size 512 --repeats 20 \
    --compile-modes default max-autotune --compile-timeout 150 --json "$OUT/gap_cuda.json" 2>&1 | tee "$OUT/gap_cuda.txt"
else
  timeout 300 python3 benchmarks/gap.py --device cuda --batch 32 --size 512 --repeats 20 --only-compile-and-profile \
    --compile-modes default+pad16 --compile-timeout 150 \
    --json "$OUT/gap_cuda_compile.json" 2>&1 | tee "$OUT/gap_cuda_compile.txt"
  timeout 60 python3 benchmarks/gap.py --device cuda --batch 32 --size 512 --only-compile-and-profile \
    --compile-modes none --profile-split-multiple 16 --json "$OUT/gap_cuda_profile16.json" 2>&1 \
    | tee "$OUT/gap_cuda_profile16.txt"
fi
