#!/usr/bin/env bash
# The README's test command: sets up .venv if needed (idempotent), then runs the default test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -m slow` for the long real-data tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/install.sh"
cd "$ROOT"
exec "${MMBUS_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
