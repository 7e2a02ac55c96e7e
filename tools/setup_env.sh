#!/usr/bin/env bash
# Set up ssl_det's environment from nothing, idempotently:
#   a virtual environment in the repo (.venv), the CPU torch wheel, mmcv 2.1.0 with its
#   compiled ops (built once from source, ~20 min on 2 cores, then reused from a cache
#   keyed by Python and torch versions), mmdet/mmengine and friends, open3d, and ssl_det
#   itself with its C++ extension.
# Environment: SSL_DET_VENV (default <repo>/.venv), SSL_DET_CACHE (default ~/.cache/ssl_det).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SSL_DET_VENV:-$ROOT/.venv}"
CACHE="${SSL_DET_CACHE:-$HOME/.cache/ssl_det}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="2.13.0"
MMCV_VERSION="2.1.0"

say() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# Skip everything when nothing that feeds the environment changed since the last setup.
STAMP="$VENV/.ssl_det_setup"
fingerprint=$(cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.cfg" "$ROOT/setup.py" "$ROOT/pyproject.toml" \
  $(find "$ROOT/ssl_det/ops/csrc" -type f 2>/dev/null | sort) 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] && "$PY" -c "import ssl_det._ext" 2>/dev/null; then
  say "environment up to date ($VENV)"
  exit 0
fi

if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  say "installing torch==$TORCH_VERSION (CPU wheel from the local disk where present)"
  "${PIP[@]}" install -q "torch==$TORCH_VERSION"
fi
say "installing build tools (setuptools<70: mmcv's setup.py imports pkg_resources)"
"${PIP[@]}" install -q "setuptools<70" wheel ninja psutil numpy

TORCH_FULL=$("$PY" -c "import torch; print(torch.__version__)")
PY_TAG=$("$PY" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$PY_TAG-torch$TORCH_FULL"
mkdir -p "$WHEEL_DIR"
if ! "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  if ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    say "reusing cached mmcv wheel: $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  else
    say "building mmcv $MMCV_VERSION with ops from source (first time only: ~20 min on 2 cores)"
    say "the wheel is cached in $WHEEL_DIR for every later setup"
    start=$(date +%s)
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" wheel --no-deps --no-build-isolation \
      "mmcv==$MMCV_VERSION" -w "$WHEEL_DIR.tmp"
    mv "$WHEEL_DIR.tmp"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.tmp"
    say "mmcv built in $(( $(date +%s) - start )) s"
  fi
  "${PIP[@]}" install -q --no-deps "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl
else
  say "mmcv $MMCV_VERSION with ops already installed"
fi

say "installing mmdet, mmengine, pycocotools, albumentations, open3d, pytest"
"${PIP[@]}" install -q "mmdet==3.3.0" "mmengine==0.10.7" "mmcv==$MMCV_VERSION" pycocotools \
  "albumentations>=2,<3" "open3d-cpu>=0.19" addict yapf rich termcolor opencv-python-headless \
  pytest shapely matplotlib

# open3d's wheel links libusb; Debian ships it as libusb-1.0-0.
if ! "$PY" -c "import open3d" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's libusb-1.0-0 (open3d needs libusb-1.0.so.0)"
    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null; })
  else
    say "WARNING: open3d cannot load; as root run: apt-get install -y libusb-1.0-0 libgl1"
  fi
fi

if [ -f "$ROOT/setup.py" ]; then
  say "installing ssl_det (editable) and compiling its C++ ops"
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
fi
echo "$fingerprint" > "$STAMP"
say "done: $VENV"
