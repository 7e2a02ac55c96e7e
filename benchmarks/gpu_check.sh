#!/usr/bin/env bash
# GPU check of ssl_det's compiled ops, for a host with python3 + CUDA torch + nvcc and no
# OpenMMLab (mmcv/mmdet/mmengine absent): builds ssl_det._ext in place with the CUDA
# kernels for this GPU only, runs tests/test_ops (CUDA paths against the references; mmcv
# and shapely peers skip), then benchmarks the ops on the GPU against the torch reference.
# Logs and ops_cuda.json go to $OUT (default benchmarks/results/gpu). Takes ~3-4 minutes.
#
#   bash benchmarks/gpu_check.sh [--quick]     (extra arguments go to benchmarks/ops.py)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/benchmarks/results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export SSL_DET_OPS_ONLY=1 PYTHONUNBUFFERED=1
say() { printf '[gpu_check] %s\n' "$*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt" || true
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
command -v nvcc >/dev/null || { say "nvcc not found on PATH"; exit 1; }

# Compile for this GPU's architecture only (one target keeps the build short).
ARCH="$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")"
say "building ssl_det._ext with CUDA for sm_${ARCH/./} ($(nvcc --version | tail -1))"
start=$(date +%s)
SSL_DET_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$(nproc)" \
  "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
say "built in $(( $(date +%s) - start )) s"
"$PY" -c "import ssl_det.ops as o; assert o.cuda_available(), 'extension built without CUDA'"

say "tests/test_ops"
# --confcutdir: the repository's tests/conftest.py needs mmengine, absent on this host.
"$PY" -m pytest -x -q -p no:cacheprovider --confcutdir tests/test_ops tests/test_ops 2>&1 | tee "$OUT/pytest.log"

say "benchmarks/ops.py --device cuda $*"
"$PY" benchmarks/ops.py --device cuda --out "$OUT/ops_cuda.json" "$@" 2>&1 | tee "$OUT/bench.log"
say "done; logs and ops_cuda.json in $OUT"
