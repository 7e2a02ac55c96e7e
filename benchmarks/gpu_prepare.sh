#!/usr/bin/env bash
# Fetches, on a machine with pip and network, what benchmarks/gpu_check.sh needs on a GPU
# host that has Python 3.12 with CUDA torch, nvcc and the usual scientific packages but no
# OpenMMLab and no network (the device host of docs/benchmarks.md), into .whl/ (git-ignored):
#
#   .whl/*.whl              pure-Python or cp312 manylinux wheels, installed there with
#                           pip --no-index --no-deps --target (gpu_check.sh does it)
#   .whl/mmcv-2.1.0.tar.gz  mmcv's source release (mmcv 2.1.0 has no wheel for torch 2.11),
#                           compiled there by benchmarks/gpu_mmcv.py
#   .whl/build/*.whl        setuptools < 70 for that compilation only (mmcv's setup.py
#                           imports pkg_resources)
#   .whl/fallback/*.whl     installed there only where the host's own version is older or
#                           missing (typing-extensions: pydantic 2.14 needs >= 4.16)
#
# The versions are the ones this repository is tested with (.venv); the packages are the
# ones the GPU host lacks (its list: /work/.library/device/KINDS.md): OpenMMLab, what
# mmengine, mmdet, mmcv and ssl_det (albumentations) import, and nothing it already has.
#
#   bash benchmarks/gpu_prepare.sh            (about 10 MB; run from anywhere)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
DEST="$ROOT/.whl"
mkdir -p "$DEST/build" "$DEST/fallback"
git check-ignore -q .whl/x.whl || { echo "[gpu_prepare] .whl/ is not git-ignored"; exit 1; }

WHEELS=(
  mmengine==0.10.7 mmdet==3.3.0
  addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0       # mmengine, mmcv
  terminaltables==3.1.10 pycocotools==2.0.11 shapely==2.2.0               # mmdet
  albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16  # ssl_det
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
)
PLATFORMS=()
for n in 2_17 2_24 2_27 2_28 2_31 2_34 2_35; do
  PLATFORMS+=(--platform "manylinux_${n}_x86_64")
done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${WHEELS[@]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST/build" 'setuptools==69.5.1'
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST/fallback" 'typing-extensions==4.16.0'
# --no-build-isolation: pip reads the sdist's metadata with this environment's setuptools
# (< 70, as mmcv's setup.py needs) and torch; an isolated build would fetch a newer one.
"$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$DEST" \
  mmcv==2.1.0

# one version of each package: two would stop the install on the host
dups=$(ls "$DEST"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
[ -z "$dups" ] || { echo "[gpu_prepare] several versions of: $dups (remove the old ones)"; exit 1; }
echo "[gpu_prepare] $(ls "$DEST" | wc -l) files, $(du -sh "$DEST" | cut -f1) in $DEST:"
ls "$DEST" "$DEST/build" "$DEST/fallback"
