#!/usr/bin/env bash
# The main job on the built-in demo data, from nothing: set up the environment (the first
# time builds mmcv, ~20 min), generate the demo data, train, evaluate, print the table.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
exec "${SSL_DET_VENV:-$ROOT/.venv}/bin/python" "$ROOT/tools/demo.py" "$@"
