#!/usr/bin/env bash
# Idempotent set-up of the project environment (.venv) on the pinned OpenMMLab stack.
#
#   bash tools/install.sh            # creates/updates .venv, then checks the compiled ops
#
# Environment variables honoured:
#   MMBUS_VENV      where the virtual environment lives (default: <repo>/.venv)
#   MMBUS_PYTHON    interpreter used to create it (default: python3.11, else python3)
#   FORCE_CUDA=1    build mmcv's CUDA kernels (needs nvcc matching torch's CUDA version)
#   MAX_JOBS        parallel compile jobs for mmcv (default 2)
#   PIP_*           every standard pip variable (PIP_FIND_LINKS for a wheel cache, PIP_INDEX_URL, ...)
# A second run with everything in place only re-checks the ops (a few seconds).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMBUS_VENV:-$ROOT/.venv}"
PY="${MMBUS_PYTHON:-$(command -v python3.11 || command -v python3)}"
STAMP="$VENV/.mmbus-install-stamp"
say() { printf '[mmbus install] %s\n' "$*"; }

want_stamp() {
  cat "$ROOT"/requirements/*.txt "$ROOT/tools/install.sh" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1
}

check_ops() {
  "$VENV/bin/python" - <<'PY'
import sys
try:
    import torch, torchvision
    from torchvision.ops import nms as tv_nms
    from mmcv.ops import nms, RoIAlign
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
    scores = torch.tensor([0.9, 0.8])
    assert tv_nms(boxes, scores, 0.5).tolist() == [0]
    dets, keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [0]
    rois = torch.tensor([[0., 0., 0., 8., 8.]])
    out = RoIAlign((7, 7), 1.0, 0)(torch.rand(1, 3, 16, 16), rois)
    assert out.shape == (1, 3, 7, 7)
    import mmdet, mmpretrain, mmengine, mmbus, pytorch_grad_cam, onnxruntime  # noqa: F401
except Exception as exc:  # pragma: no cover - printed for the user
    print(f'[mmbus install] ops check FAILED: {type(exc).__name__}: {exc}', file=sys.stderr)
    print('[mmbus install] How to fix:\n'
          '  * "operator torchvision::nms does not exist": torch and torchvision builds differ; run\n'
          '      .venv/bin/pip install --force-reinstall "torch==2.13.0,!=2.13.0+cpu" torchvision==0.28.0\n'
          '  * mmcv.ops import error: mmcv was built without ops or against another torch; run\n'
          '      .venv/bin/pip uninstall -y mmcv && rm -f .venv/.mmbus-install-stamp && bash tools/install.sh\n'
          '    (add FORCE_CUDA=1 on a GPU machine; pip caches the built wheel)', file=sys.stderr)
    sys.exit(1)
print(f'[mmbus install] ops OK: torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmcv nms/RoIAlign, mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}, '
      f'mmbus {mmbus.__version__}')
PY
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" ]]; then
  check_ops && exit 0
  say "environment present but the check failed; reinstalling"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtual environment $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

say "1/5 build tools (setuptools<81 keeps pkg_resources for mmcv and mmengine)"
"${PIP[@]}" "setuptools>=77,<81" wheel
say "2/5 torch 2.13.0 + torchvision 0.28.0 (excluding a local +cpu build that breaks torchvision)"
"${PIP[@]}" "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
if ! "$VENV/bin/python" -c "import mmcv.ops" 2>/dev/null; then
  say "3/5 mmcv 2.1.0 with compiled ops, no build isolation (about 12 min on 2 cores the first time;"
  say "    pip caches the wheel afterwards). FORCE_CUDA=${FORCE_CUDA:-0}"
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" --no-build-isolation "mmcv==2.1.0"
else
  say "3/5 mmcv with ops already installed"
fi
say "4/5 mmengine, mmdet, mmpretrain and the rest"
"${PIP[@]}" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
# grad-cam without its dependency list (it names opencv-python-headless, which would replace opencv-python's cv2)
"${PIP[@]}" --no-deps -r "$ROOT/requirements/explain.txt"
# mmpretrain's multimodal models break with new transformers; keep it out.
"$VENV/bin/python" -m pip uninstall -y -q transformers 2>/dev/null || true
say "5/5 mmbus (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
check_ops
want_stamp > "$STAMP"
say "done: activate with 'source $VENV/bin/activate'"
