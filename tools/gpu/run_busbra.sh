#!/usr/bin/env bash
# BUS-BRA at paper scale on one lent GPU machine, in one call (or two): both stages, every method, one tarball back.
#
#   bash tools/gpu/run_busbra.sh --kit gpu_kit --out "$OUT" [--budget-s 540] [--smoke-s 60] [--jobs N]
#                                [--schedule paper|toy] [--no-smoke] [--stage2-only] [--commit SHA]
#                                [--site DIR] [--setup-only]
#
# Two calls back to back on the warm machine give training several times the time of one: the first
# (--setup-only --site .gpu_site --budget-s 360, about 4 minutes) installs, builds mmcv, runs the preflight and the smoke pass
# and packs their results; the second (--site .gpu_site --no-smoke) finds the stack built in .gpu_site (a folder
# git ignores, which the device keeps between calls on a warm machine) and spends its budget on the study. On a
# fresh machine the second call builds again, as a single call does.
#
# The kit (tools/gpu/prepare_kit.py) holds the compact BUS-BRA copy (kit/busbra) and the wheels the machine
# lacks (kit/wheels: mmengine, mmdet, mmpretrain, pycocotools and their pure-Python needs, the mmcv 2.1.0 sdist).
# Steps, all inside --budget-s seconds from the start (the device call's limit less a margin):
#   1. install the wheels into --site (default: a fresh temporary folder) and build mmcv with its CUDA ops (16
#      cores: about 3 minutes; at most half the budget, or in a setup call all but the smoke pass and a minute);
#      skipped where mmcv.ops already imports (this machine's own
#      environment, the CPU test). Should that build fail, or its ops fail on the GPU (the preflight runs NMS and
#      RoIAlign there), mmcv is built with its CPU ops (or kept) and the run is stage 2 alone (the recognisers need
#      no mmcv op; the detectors do);
#      a --site that holds a finished install of the same kit is used as it is (one with CPU ops only because
#      --stage2-only asked for them is rebuilt by a call that wants the detectors; one whose CUDA build failed
#      makes the call stage 2 alone, as that build would again);
#   2. smoke pass: configs/studies/busbra_gpu.py (busbra_gpu_stage2.py with --stage2-only) at --schedule toy on the
#      kit's data (a few iterations of every piece, tests, report), so a failure that only CUDA shows costs a
#      minute, not the run; --setup-only stops after it (and packs it), and gives it what is left of its budget;
#   3. the study itself (--keep-going: a failed run stops only what depends on it), with every training run ending
#      cleanly at $MMBUS_STOP_AT (DeadlineHook), set to leave time for the tests, the crops and the report;
#   4. a report from the runs that finished, if the study did not end by itself;
#   5. OUT/busbra_gpu.tar.gz (rows, report, logs, curves, detector predictions, each stage-2 test's scores,
#      kit.json) beside OUT/run.log,
#      the whole console output, streamed there as it runs so a failure is readable.
# Unpack the results on the development machine with tools/gpu/collect_results.py. The copy of the tree that
# travels has no .git: --commit records the commit it was (else kit/COMMIT, written by prepare_kit.py).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
kit='' out='' budget=540 smoke_s=60 jobs='' schedule=paper smoke=1 commit='' stage2_only=0 stage2_reason=''
site_dir='' site_arg='' setup_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --kit) kit=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --budget-s) budget=$2; shift 2 ;;
        --smoke-s) smoke_s=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --schedule) schedule=$2; shift 2 ;;
        --no-smoke) smoke=0; shift ;;
        --stage2-only) stage2_only=1 stage2_reason='--stage2-only'; shift ;;
        --commit) commit=$2; shift 2 ;;
        --site) site_dir=$2 site_arg=$2; shift 2 ;;
        --setup-only) setup_only=1; shift ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        *) echo "run_busbra.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$kit" ] && [ -n "$out" ] || { echo 'run_busbra.sh: --kit and --out are required (see --help)' >&2; exit 2; }
case "$schedule" in paper|toy) ;; *) echo "run_busbra.sh: --schedule must be paper or toy, not $schedule" >&2; exit 2 ;; esac
for n in "$budget" "$smoke_s" "${jobs:-24}"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "run_busbra.sh: $n is not a whole number of seconds / jobs" >&2; exit 2; }
done
for s in basic_train extended_train val test; do
    [ -f "$kit/busbra/annotations/$s.json" ] || {
        echo "run_busbra.sh: $kit/busbra/annotations/$s.json is missing (make the kit with tools/gpu/prepare_kit.py)" >&2
        exit 2; }
done
start=$(date +%s)
kit=$(cd "$kit" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/run.log") 2>&1
tee_pid=$!
elapsed() { echo $(( $(date +%s) - start )); }
say() { echo "[gpu $(elapsed)s] $*"; }
time_left() { local t=$(( budget - $(elapsed) )); echo $(( t > 1 ? t : 1 )); }  # a limit for timeout (0: none)
py=${PYTHON:-python3}
# the cores this process may use: nproc alone obeys OMP_NUM_THREADS (1 where a caller set it for its loaders),
# which would make the mmcv build serial
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
export PYTHONUNBUFFERED=1
# torch's extension builder looks for ninja on PATH, and without it compiles one file at a time (a 16-core build
# would not end within its limit): where PATH has none, the one beside the Python (pip's ninja package)
py_bin=$(dirname "$(command -v "$py" || echo /nonexistent/python)")
if ! command -v ninja > /dev/null && [ -x "$py_bin/ninja" ]; then export PATH=$py_bin:$PATH; fi
# what a --site must hold to be used as it is: an install of exactly these wheels, for this Python
stack_id() {
    echo "python $("$py" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)"
    ls -l "$kit"/wheels 2>/dev/null | awk 'NR > 1 {print $5, $NF}'
}

# -- 1. install ------------------------------------------------------------------------------------------
marker=''
# (the physical path: find does not descend into a symbolic link given as its starting point)
[ -n "$site_dir" ] && { mkdir -p "$site_dir" && site_dir=$(cd "$site_dir" && pwd -P) && marker=$site_dir/.mmbus_stack; }
# the marker's first line: CUDA, CPU (asked for by --stage2-only: a call that wants the detectors rebuilds it)
# or CPU-FALLBACK (the CUDA build failed: the same kit on the same machine would fail again, so it is used)
site_fits() { [ -f "$marker" ] && [ "$(tail -n +2 "$marker")" = "$(stack_id)" ] &&
    { [ "$(head -1 "$marker")" != CPU ] || [ "$stage2_only" = 1 ]; }; }
if "$py" -c 'import mmcv.ops, mmdet, mmpretrain' 2>/dev/null; then
    say "the OpenMMLab stack is installed already; no install"
elif [ -n "$marker" ] && site_fits; then
    export PYTHONPATH=$site_dir${PYTHONPATH:+:$PYTHONPATH}
    say "using the stack an earlier call installed in $site_dir (mmcv: $(head -1 "$marker") ops); no install"
    if [ "$(head -1 "$marker")" = CPU-FALLBACK ] && [ "$stage2_only" = 0 ]; then
        say "an earlier call could not build mmcv's CUDA ops here: this run is stage 2 alone (ground-truth crops)"
        stage2_only=1 stage2_reason="mmcv's CUDA ops did not build"
    fi
else
    [ -d "$kit/wheels" ] || { say "no $kit/wheels and no installed mmcv: cannot run"; exit 1; }
    # fresh: pip --target into a folder of an earlier call would keep its packages
    if [ -n "$site_dir" ]; then
        # emptied only when this script made it (.mmbus_site, written first: an install cut off halfway is redone)
        if [ -n "$(ls -A "$site_dir")" ] && [ ! -f "$site_dir/.mmbus_site" ]; then
            say "--site $site_dir holds files this script did not put there; give an empty or new folder"
            exit 2
        fi
        find "$site_dir" -mindepth 1 -delete && touch "$site_dir/.mmbus_site" || exit 1
        site=$site_dir
    else
        site=$(mktemp -d)
    fi
    ninja_v=$(ninja --version 2>/dev/null) || ninja_v='not found: files are compiled one at a time'
    say "installing the kit's wheels into $site (ninja: $ninja_v)"
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$kit"/wheels/*.whl || exit 1
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    # torch's CUDA headers include those of CUDA libraries (cusparse.h, cublas_v2.h) that pip's nvidia-* packages
    # beside torch hold and a CUDA toolkit with nvcc alone lacks: the compilers look there after their own folders
    cuda_inc=$("$py" -c 'import glob, nvidia
print(":".join(sorted({d for p in nvidia.__path__ for d in glob.glob(p + "/*/include")})))' 2>/dev/null)
    build_mmcv() {  # build_mmcv 1|0 LIMIT_S: with CUDA ops, or with CPU ops only (no GPU visible to its setup.py)
        local extra=() t0=$(elapsed) rc
        [ "$1" = 0 ] && extra=(CUDA_VISIBLE_DEVICES=)
        [ "$1" = 1 ] && [ -n "$cuda_inc" ] && extra=(CPLUS_INCLUDE_PATH="$cuda_inc${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}")
        timeout --kill-after=10 "$2" env ${extra[@]+"${extra[@]}"} MMCV_WITH_OPS=1 FORCE_CUDA=$1 \
            TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=$cores \
            "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
            --target "$site" "$kit"/wheels/mmcv-*.tar.gz  # no cache: a CPU-ops build must not stand in for a CUDA one
        rc=$?
        say "mmcv build ($([ "$1" = 1 ] && echo CUDA || echo CPU) ops) took $(( $(elapsed) - t0 ))s, exit $rc" \
            "$([ "$rc" = 124 ] || [ "$rc" = 137 ] && echo "(stopped at its limit of ${2}s)")"
        return $rc
    }
    # the CUDA build gets at most half the budget (a hung or very slow build must leave time for stage 2), or in
    # a setup call all but the smoke pass and a minute for the preflight and the packing
    cuda_build_s=$(( budget / 2 ))
    [ "$setup_only" = 1 ] && cuda_build_s=$(( budget - smoke_s - 60 > budget / 2 ? budget - smoke_s - 60 : budget / 2 ))
    if [ "$stage2_only" = 1 ]; then
        say "building mmcv 2.1.0 with CPU ops ($cores jobs): stage 2 alone needs no CUDA op"
        build_mmcv 0 "$(time_left)" || { say "the mmcv build failed"; exit 1; }
    else
        say "building mmcv 2.1.0 with CUDA ops (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}, $cores jobs)"
        if ! build_mmcv 1 "$cuda_build_s"; then
            say "the mmcv build with CUDA ops failed (its errors are above); building it with CPU ops instead:" \
                "the detectors need CUDA ops, so this run is stage 2 alone (ground-truth crops)"
            rm -rf "$site"/mmcv "$site"/mmcv-*.dist-info
            build_mmcv 0 "$(time_left)" || { say "the mmcv build failed"; exit 1; }
            stage2_only=1 stage2_reason="mmcv's CUDA ops did not build"
            smoke=0  # what is left of the budget goes to training: the smoke pass guards CUDA-only failures
        fi
    fi
    # a later call with the same --site uses this install as it is (first line: the ops mmcv was built with)
    ops=CUDA
    [ "$stage2_only" = 1 ] && ops=CPU
    [ -n "$stage2_reason" ] && [ "$stage2_reason" != --stage2-only ] && ops=CPU-FALLBACK
    [ -n "$marker" ] && { echo "$ops"; stack_id; } > "$marker"
fi
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}
# preflight: the stack imports, and mmcv's ops run where the detectors will run them (NMS, and RoIAlign in the
# detectors' float16); CUDA ops that built but fail on this GPU leave stage 2, which needs none of them
# at most 2 minutes, and at most 45 s past the budget (inside the device call's margin beyond it)
pre_s=$(( $(time_left) + 45 )); [ "$pre_s" -gt 120 ] && pre_s=120
preflight=$(timeout --kill-after=10 "$pre_s" "$py" - "$stage2_only" <<'PY'
import sys
import torch, mmcv, mmdet, mmpretrain, mmengine  # noqa: E401
from mmcv.ops import RoIAlign, nms
from mmengine.utils.dl_utils import collect_env
import mmbus.registry  # noqa: F401 (registers mmbus and imports mmdet.models and mmpretrain.models, as every run does)
collect_env()  # what every Runner calls first (it imports distutils, which Python 3.12 has only through setuptools)
cuda = torch.cuda.is_available()
dev = 'cuda' if cuda else 'cpu'
ops = 'cpu' if sys.argv[1] == '1' else dev  # stage 2 alone: the recognisers run on the GPU, mmcv's ops on CPU
name = torch.cuda.get_device_name(0) if cuda else 'CPU only'  # before a failing kernel can poison the context


def check(where):
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]], device=where)
    assert nms(boxes, torch.tensor([0.9, 0.8], device=where), 0.5)[1].tolist() == [0]
    half = torch.float16 if where == 'cuda' else torch.float32
    feats = torch.ones(1, 2, 8, 8, device=where, dtype=half)
    rois = torch.tensor([[0., 1., 1., 6., 6.]], device=where, dtype=half)
    assert RoIAlign((2, 2), 1.0, 2)(feats, rois).float().sub(1).abs().max().item() < 1e-3


try:
    check(ops)
except Exception as e:  # noqa: BLE001 (any failure of the ops decides the same way)
    if ops != 'cuda':
        raise
    print(f'mmcv CUDA ops fail on this GPU: {type(e).__name__}: {str(e)[:300]}', file=sys.stderr)
    check('cpu')
    ops = 'cpu'
print(f'torch {torch.__version__}, CUDA {torch.version.cuda if cuda else "none"}, '
      f'{name}, mmcv {mmcv.__version__} (NMS and RoIAlign on '
      f'{ops} OK), mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}, mmengine {mmengine.__version__}',
      file=sys.stderr)
print(dev, ops)
PY
) || { say "the stack does not import or mmcv's ops fail; stopping"; exit 1; }
device=${preflight% *}
if [ "$device" = cuda ] && [ "${preflight#* }" = cpu ] && [ "$stage2_only" = 0 ]; then
    say "mmcv's CUDA ops built but do not run on this GPU (above): this run is stage 2 alone (ground-truth crops)"
    stage2_only=1 stage2_reason="mmcv's CUDA ops failed on the GPU"
fi
spec=$here/configs/studies/busbra_gpu.py
[ "$stage2_only" = 1 ] && spec=$here/configs/studies/busbra_gpu_stage2.py
say "device: $device; study: ${spec#$here/}; $cores cores; /dev/shm $(df -h /dev/shm 2>/dev/null | awk 'NR==2 {print $4}') free"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# two dozen processes of different sizes share one GPU: segments that grow in place waste less of it to
# fragmentation than the caching allocator's fixed blocks
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}

gpu_mode=$(nvidia-smi --query-gpu=compute_mode --format=csv,noheader 2>/dev/null | head -1)
if [[ "$gpu_mode" == *Exclusive* ]]; then  # one process may hold the GPU: the runs must go one after another
    say "the GPU's compute mode is $gpu_mode: one run at a time"
    jobs=1
fi
if [ -z "$jobs" ]; then  # runs at a time: all of them (23) where the GPU holds them, fewer on an 80 GB card
    # (about 3 GB a recogniser, 5 a detector, estimated); a run queued until too near the deadline is not started
    gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
    jobs=24
    [[ "$gpu_mib" =~ ^[0-9]+$ ]] && [ "$gpu_mib" -lt 100000 ] && jobs=16
    say "--jobs $jobs (GPU memory: ${gpu_mib:-unknown} MiB)"
fi
# the GPU's memory and load every 10 s through the smoke pass and the study: what the next run's --jobs is set from
usage_pid=''
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits -l 10 \
        > "$out/gpu_usage.csv" 2>/dev/null &
    usage_pid=$!
fi

work=$out/work
study() {  # study WORK_DIR SCHEDULE TIMEOUT_S PORT
    local port=()  # the torchrun of the smoke pass, stopped at its limit, may still hold its port: one each
    [ "$stage2_only" = 0 ] && port=("detector.port=$4")
    timeout --signal=TERM --kill-after=15 "$3" "$py" "$here/tools/run_study.py" "$spec" \
        --schedule "$2" --jobs "$jobs" --keep-going --device "$device" --work-dir "$1" \
        --cfg-options "data.root=$kit/busbra" ${port[@]+"${port[@]}"}
}

# -- 2. smoke pass -----------------------------------------------------------------------------------------
smoke_rc=skipped
if [ "$smoke" = 1 ] && [ "$schedule" != toy ]; then
    # a setup call has nothing else to do: its smoke pass may use all but the half minute the packing needs
    [ "$setup_only" = 1 ] && [ $(( $(time_left) - 30 )) -gt "$smoke_s" ] && smoke_s=$(( $(time_left) - 30 ))
    say "smoke pass: every piece for a few iterations (at most ${smoke_s}s)"
    study "$work/smoke" toy "$smoke_s" 29501
    smoke_rc=$?
    case "$smoke_rc" in
        0) say "smoke pass ended (exit 0)" ;;
        124|137) say "smoke pass stopped at its limit of ${smoke_s}s: incomplete (what ran is in $work/smoke/logs" \
                     "and is packed; a piece not reached is untested, not failed)" ;;
        *) say "smoke pass ended (exit $smoke_rc); its failures are in $work/smoke/logs and are packed" ;;
    esac
fi

# -- 3. the study, ending by the budget ----------------------------------------------------------------
# after training: the last validations, a test per run (two dozen new processes at once), the detector crops,
# the two-stage tests and the report, estimated at up to two and a half minutes (the reserve); the study is
# stopped 40 s before the budget ends, which leaves the fallback report (step 4) and the packing their own time
reserve=$(( budget / 4 > 150 ? budget / 4 : 150 ))
left=$(( budget - $(elapsed) ))
if [ "$setup_only" = 1 ]; then
    say "--setup-only: the stack is ready${marker:+ in $site_dir}; no study in this call"
    main_rc=skipped
elif [ "$left" -le $(( reserve + 40 + 60 )) ]; then  # 60 s: the least a training run is started with (MIN_TRAIN_S)
    say "only ${left}s of the budget left: no time to train; packing what there is"
    main_rc=skipped
else
    export MMBUS_STOP_AT=$(( $(date +%s) + left - 40 - reserve ))
    say "study at schedule $schedule: training ends by $(date -d "@$MMBUS_STOP_AT" +%T) ($(( left - 40 - reserve ))s)," \
        "everything by $(date -d "@$(( $(date +%s) + left - 40 ))" +%T)"
    study "$work/main" "$schedule" $(( left - 40 )) 29500
    main_rc=$?
    unset MMBUS_STOP_AT
    say "study ended (exit $main_rc)"
fi

# -- 4. report from what finished ---------------------------------------------------------------------------
# (the study draws its own report even with failed runs; this is for a study stopped before its report stage)
if [ "$main_rc" != 0 ] && [ -d "$work/main/rows" ] && [ ! -f "$work/main/report/report.md" ]; then
    left=$(( budget - $(elapsed) - 10 ))
    if [ "$left" -gt 5 ]; then
        say "building the report from the runs that finished"
        timeout "$left" "$py" -m mmbus.reporting.report "$work/main" || say "the fallback report failed"
    fi
fi

# -- 5. pack --------------------------------------------------------------------------------------------------
if [ -n "$usage_pid" ]; then  # stopped and reaped first: tar fails on a file that grows while it reads it
    kill "$usage_pid" 2>/dev/null
    wait "$usage_pid" 2>/dev/null
fi
# each stage-2 test's scores in a few kB beside its pickle (which stays behind): with report_context.json, what a
# report needs, so one the device did not finish is drawn where the results are collected
# (15 to 60 s, within what is left of the budget where it can: typically a few seconds)
works=()  # the main run first: the one that matters when the time runs out
for w in main smoke; do [ -d "$out/work/$w" ] && works+=("$out/work/$w"); done
scores_s=$(time_left); [ "$scores_s" -lt 15 ] && scores_s=15; [ "$scores_s" -gt 60 ] && scores_s=60
[ "${#works[@]}" -gt 0 ] && { timeout "$scores_s" "$py" -c 'import sys; from mmbus.reporting.gpu_kit import write_compact_scores as w
print(sum(w(d) for d in sys.argv[1:]), "scores files written")' "${works[@]}" || say "writing the scores files failed"; }
[ -n "$commit" ] || commit=$(git -C "$here" rev-parse HEAD 2>/dev/null || cat "$kit/COMMIT" 2>/dev/null || echo unknown)
"$py" - "$out/kit.json" <<PY
import json, sys, time
json.dump(dict(command='bash tools/gpu/run_busbra.sh --kit KIT --out OUT --budget-s $budget --smoke-s $smoke_s '
                       '--jobs $jobs --schedule $schedule' + (' --stage2-only' if "$stage2_reason" == '--stage2-only' else '')
                       + (' --site $site_arg' if '$site_arg' else '') + (' --setup-only' if $setup_only else ''),
               spec='${spec#$here/}', stage2_only_why="$stage2_reason" or None, commit='$commit', device='$device',
               setup_only=bool($setup_only),
               smoke_exit='$smoke_rc', study_exit='$main_rc', budget_s=$budget, wall_s=$(elapsed),
               finished=time.strftime('%Y-%m-%d %H:%M:%S')), open(sys.argv[1], 'w'), indent=1)
PY
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv > "$out/nvidia_smi.csv" 2>/dev/null \
    || rm -f "$out/nvidia_smi.csv"
cd "$out"
parts=$(ls -d kit.json nvidia_smi.csv gpu_usage.csv 2>/dev/null)
for w in work/smoke work/main; do
    [ -d "$w" ] || continue
    # detectors: <det>/<timestamp>/vis_data; stage-2 runs: runs/<grid point>/<method>/<timestamp>/vis_data
    parts="$parts $(cd "$out" && ls -d $w/report $w/rows $w/logs $w/study_state.json $w/study_spec.py $w/configs \
        $w/report_context.json $w/eval $w/*/*/vis_data/scalars.json $w/runs/*/*/*/vis_data/scalars.json \
        $w/runs/*/*/calibration*.json $w/runs/*/*/test_*/predictions_scores.json $w/runs/*/*/test_*/*/*.png \
        2>/dev/null | tr '\n' ' ')"
done
tar czf busbra_gpu.tar.gz $parts
tar_rc=$?  # 1: a file changed while read (the archive is written all the same); 2: a fatal error
# what stays in OUT is the tarball and the log, whatever tar said: a device call brings back at most 8 files
rm -rf kit.json nvidia_smi.csv gpu_usage.csv work
[ "$tar_rc" -le 1 ] && [ -s busbra_gpu.tar.gz ] || { say "packing the results failed (tar exit $tar_rc)"; exit 1; }
say "wrote $out/busbra_gpu.tar.gz ($(du -h busbra_gpu.tar.gz | cut -f1)); smoke exit $smoke_rc, study exit $main_rc"
rc=1
[ "$main_rc" = 0 ] && rc=0
if [ "$setup_only" = 1 ]; then  # a setup call succeeds with its smoke pass (see the log for an incomplete one)
    rc=0
    [ "$smoke_rc" = 0 ] || [ "$smoke_rc" = skipped ] || rc=1
fi
exec >&- 2>&-   # the log's tee sees its end of input and writes the last lines before the call returns
wait "$tee_pid" 2>/dev/null
exit $rc
