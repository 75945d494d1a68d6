#!/usr/bin/env bash
# The README's main command: sets up .venv if needed (idempotent), then runs the main-job study
# (configs/studies/main_job_synthetic.py: the whole two-stage study on two generated hospitals).
# Extra arguments go to tools/run_study.py, e.g. --schedule toy, --force 'train_*', --cfg-options k=v.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/install.sh"
cd "$ROOT"
exec "${MMBUS_VENV:-$ROOT/.venv}/bin/python" tools/run_study.py configs/studies/main_job_synthetic.py "$@"
