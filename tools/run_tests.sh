#!/usr/bin/env bash
# Set up the environment (idempotent; the first run builds mmcv, ~20 min) and run the tests.
#   bash tools/run_tests.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${SSL_DET_VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
