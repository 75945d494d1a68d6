#!/usr/bin/env bash
# Stage 2 of BUS-BRA on one GPU machine without internet: the four methods of configs/studies/busbra_stage2.py
# (mean teacher, FixMatch, supervised-basic, supervised-all over three labelled draws) at the paper schedule,
# from a compact letterboxed copy of the ground-truth crops; one tarball of the results comes back.
#
#   bash tools/gpu/stage2_busbra.sh --crops DIR --out DIR [--wheels DIR] [--schedule paper|toy]
#                                   [--jobs N] [--budget-s S]
#
# Prepare on a machine with the dataset (and pip access for the wheels):
#   python tools/analysis/letterbox_crops.py work_dirs/busbra_stage2/crops/gt gpu/crops64 --size 64
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d gpu/wheels \
#       mmengine==0.10.7 mmpretrain==1.2.0 mmdet==3.3.0 pycocotools addict yapf termcolor terminaltables \
#       mat4py modelindex shapely ordered-set      # plus any other requirement the machine lacks
#   pip download --no-deps --no-binary=:all: -d gpu/wheels mmcv==2.1.0      # built there, with CUDA ops
# --wheels installs them into /tmp/site (mmcv compiled with FORCE_CUDA=1: about 2 minutes on 16 cores); without
# it the installed packages are used. --budget-s stops the study after S seconds (finished runs are kept and
# reported; a rerun on the same work dir resumes). Writes OUT/stage2_gpu.tar.gz (report, rows, logs, curves).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
crops='' out='' wheels='' schedule=paper jobs=4 budget=480
while [ $# -gt 0 ]; do
    case "$1" in
        --crops) crops=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --wheels) wheels=$2; shift 2 ;;
        --schedule) schedule=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --budget-s) budget=$2; shift 2 ;;
        *) echo "stage2_busbra.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$crops" ] && [ -n "$out" ] || { echo 'stage2_busbra.sh: --crops and --out are required' >&2; exit 2; }
for s in basic_train extended_train val test; do
    [ -f "$crops/$s.json" ] || { echo "stage2_busbra.sh: $crops/$s.json is missing (not a crops folder)" >&2; exit 2; }
done
crops=$(cd "$crops" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
if [ -n "$wheels" ]; then
    echo "[gpu] installing from $wheels"
    "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    MMCV_WITH_OPS=1 FORCE_CUDA=1 MAX_JOBS=$(nproc) "$py" -m pip install -q --no-index --no-deps \
        --no-build-isolation --target /tmp/site "$wheels"/mmcv-*.tar.gz
fi
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}
"$py" - <<'PY'
import torch, mmcv, mmdet, mmpretrain, mmengine  # noqa: E401
print(f'[gpu] torch {torch.__version__}, CUDA {torch.cuda.is_available()}, mmcv {mmcv.__version__}, '
      f'mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}, mmengine {mmengine.__version__}')
PY
work=$out/work
set +e
timeout --signal=TERM "$budget" "$py" "$here/tools/run_study.py" "$here/configs/studies/busbra_stage2.py" \
    --schedule "$schedule" --jobs "$jobs" --work-dir "$work" --cfg-options data.type=crops "data.root=$crops"
rc=$?
set -e
if [ $rc -ne 0 ]; then
    echo "[gpu] the study stopped (exit $rc); reporting the runs that finished"
    "$py" - "$work" "$crops" "$schedule" <<'PY'
import sys
from mmengine.config import Config
from mmbus.study.engine import Study
from mmbus.study.report import make_report
work, crops, schedule = sys.argv[1:]
spec = Config.fromfile('configs/studies/busbra_stage2.py')
spec.merge_from_dict({'data.type': 'crops', 'data.root': crops, 'schedule': schedule})
study = Study(spec, work)
study.build()
print(make_report(study))
PY
fi
cd "$work"
files=$(ls -d report rows logs study_state.json configs runs/*/*/*/vis_data 2>/dev/null || true)
tar czf "$out/stage2_gpu.tar.gz" $files
echo "[gpu] wrote $out/stage2_gpu.tar.gz (study exit $rc)"
