#!/usr/bin/env bash
# The README's main command: sets up .venv if needed (idempotent), then runs the whole two-stage pipeline
# (synthetic default unless options say otherwise; see `tools/run_pipeline.py --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/install.sh"
cd "$ROOT"
exec "${MMBUS_VENV:-$ROOT/.venv}/bin/python" tools/run_pipeline.py "$@"
