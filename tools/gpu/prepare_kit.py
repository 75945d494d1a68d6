#!/usr/bin/env python
"""Prepare the folder a device call carries to the GPU machine (no network there): BUS-BRA converted
and compacted, and the wheels of the OpenMMLab stack the machine lacks.

    python tools/gpu/prepare_kit.py --busbra RAW_BUSBRA_ROOT --out gpu_kit [--skip-wheels] [--quality 90]

Steps:

1. converts BUS-BRA with tools/dataset_converters/bus_to_coco.py into a temporary folder, with the
   split of configs/studies/busbra_stage2.py (ratios basic_train=0.12, extended_train=0.58, val=0.10,
   test=0.2, seed 0);
2. writes the compact copy (greyscale JPEG, see tools/gpu/compact_coco.py) to OUT/busbra/; when it is
   larger than --budget-mib (45) the JPEG quality is lowered in steps of 5, never below 75;
3. downloads into OUT/wheels/ the Python 3.12 manylinux wheels of mmengine, mmdet, mmpretrain,
   pycocotools and every install requirement of theirs (and of mmcv) that the GPU machine does not have,
   plus the mmcv sdist (built there with its CUDA ops) and a setuptools that still has pkg_resources (which
   mmcv's setup.py imports), one version of each;
4. prints the size of what travels (the repository's files and OUT) against the 64 MiB limit and how to
   call the device.

Exit status 1 when a step fails or the total is over the limit, 2 for bad arguments.
"""
import argparse
import email.parser
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)

from mmbus.datasets.converters.compact import compact_coco, mib  # noqa: E402

#: the split of configs/studies/busbra_stage2.py (its test asserts the two agree)
SPLIT_ARGS = ['--split', 'ratios', '--ratios', 'basic_train=0.12,extended_train=0.58,val=0.10,test=0.2',
              '--seed', '0']
LIMIT_MIB = 64            # what one device call may carry (working tree + carried paths)
MIN_QUALITY = 75          # below this JPEG artefacts start to look like speckle texture
TOP_LEVEL = ['mmengine==0.10.7', 'mmdet==3.3.0', 'mmpretrain==1.2.0', 'pycocotools']
MMCV = 'mmcv==2.1.0'
#: what mmcv's build needs beyond the machine's packages: its setup.py imports pkg_resources, which setuptools
#: 81 removed, and the image's setuptools is whatever torch left there (unpinned above); installed into the
#: kit's site folder, this one comes first on PYTHONPATH when mmcv is built
BUILD = ['setuptools>=77,<81']
PIP_PLATFORM = ['--only-binary=:all:', '--python-version', '3.12', '--implementation', 'cp',
                '--platform', 'manylinux_2_28_x86_64', '--platform', 'manylinux_2_27_x86_64',
                '--platform', 'manylinux_2_17_x86_64', '--platform', 'manylinux2014_x86_64',
                '--platform', 'manylinux1_x86_64']
#: Python packages on the GPU machine's image (its documented package list, read there 2026-11):
#: requirements named here are not downloaded
PRESENT = set('''
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
'''.split())
#: a requirement met by another distribution of the same module (``import cv2`` works with the headless
#: build; downloading opencv-python would cost ~60 MiB for nothing)
SATISFIED_BY = {'opencv-python': 'opencv-python-headless'}


def norm(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def dir_bytes(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(osp.getsize(osp.join(folder, f)) for f in files if not osp.islink(osp.join(folder, f)))
    return total


# ----------------------------------------------------------------------------------------------- dataset
def convert_busbra(root: str, tmp: str, workers: int) -> str:
    cmd = [sys.executable, osp.join(REPO, 'tools', 'dataset_converters', 'bus_to_coco.py'), '--format',
           'busbra', root, '--out-dir', tmp, *SPLIT_ARGS, '--no-progress', '--workers', str(workers)]
    print('[kit] converting BUS-BRA: ' + ' '.join(cmd[1:]), flush=True)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0:
        print('\n'.join(lines[-40:]), file=sys.stderr)
        raise RuntimeError(f'the BUS-BRA conversion failed (exit {res.returncode}); its messages are above')
    print('[kit] ' + (lines[-1] if lines else 'converted'), flush=True)
    return osp.join(tmp, 'annotations')


def compact_within(root: str, ann_dir: str, out: str, quality: int, budget: float) -> dict:
    """Compact copy at ``quality``, lowered in steps of 5 (not below :data:`MIN_QUALITY`) while the
    copy is larger than ``budget`` MiB."""
    q = quality
    while True:
        summary = compact_coco(root, out, ann_dir=ann_dir, quality=q)
        size = summary['total_bytes'] / 2 ** 20
        if size <= budget:
            if q != quality:
                print(f'[kit] quality lowered from {quality} to {q} to fit {budget:g} MiB ({size:.1f} MiB)')
            return summary
        if q <= MIN_QUALITY:
            print(f'[kit] WARNING: {size:.1f} MiB at JPEG quality {q} is still over the {budget:g} MiB aim '
                  f'(quality is not lowered below {MIN_QUALITY})', flush=True)
            return summary
        nq = max(MIN_QUALITY, q - 5)
        print(f'[kit] {size:.1f} MiB at quality {q} is over {budget:g} MiB: trying quality {nq}', flush=True)
        q = nq


# ------------------------------------------------------------------------------------------------ wheels
def pip_download(specs, dest: str, sdist: bool = False) -> None:
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '-q',
           '-d', dest]
    cmd += ['--no-binary=:all:'] if sdist else PIP_PLATFORM
    res = subprocess.run(cmd + list(specs), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'pip download {" ".join(specs)} failed:\n{res.stderr.strip()[-2000:]}')


def dist_name(filename: str) -> str:
    if filename.endswith('.whl'):
        return norm(filename.split('-')[0])
    return norm(re.sub(r'-\d.*$', '', filename[:-len('.tar.gz')]))


def requirements_of(path: str):
    """``Requires-Dist`` lines of a wheel (METADATA) or sdist (PKG-INFO, else requirements/runtime.txt)."""
    if path.endswith('.whl'):
        with zipfile.ZipFile(path) as z:
            meta = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
            msg = email.parser.Parser().parsestr(z.read(meta).decode('utf-8'))
        return msg.get_all('Requires-Dist') or []
    with tarfile.open(path) as t:
        names = t.getnames()
        info = [n for n in names if n.count('/') == 1 and n.endswith('/PKG-INFO')]
        reqs = []
        if info:
            msg = email.parser.Parser().parsestr(t.extractfile(info[0]).read().decode('utf-8'))
            reqs = msg.get_all('Requires-Dist') or []
        if not reqs:   # mmcv's setup.py reads its runtime requirements from this file
            rt = [n for n in names if n.endswith('/requirements/runtime.txt') and n.count('/') == 2]
            if rt:
                text = t.extractfile(rt[0]).read().decode('utf-8')
                reqs = [ln.split('#')[0].strip() for ln in text.splitlines() if ln.split('#')[0].strip()]
        return reqs


def needed(req_line: str):
    """``(name, specifier)`` of a requirement that applies to Python 3.12 on Linux, else None (extras,
    other platforms)."""
    from packaging.requirements import Requirement
    req = Requirement(req_line)
    if req.marker is not None:
        env = dict(python_version='3.12', python_full_version='3.12.3', sys_platform='linux',
                   platform_system='Linux', platform_machine='x86_64', os_name='posix',
                   implementation_name='cpython', platform_python_implementation='CPython', extra='')
        if 'extra' in str(req.marker) or not req.marker.evaluate(env):
            return None
    return norm(req.name), str(req.specifier)


def download_wheels(dest: str) -> list:
    """Download the stack and its missing requirements into ``dest`` (emptied first); returns rows
    ``(file, size, why)``."""
    if osp.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    why = {}
    queue = [(norm(re.split(r'[=<>!~]', s)[0]), s, 'asked for') for s in TOP_LEVEL]
    skipped = {}
    while queue:
        name, spec, reason = queue.pop(0)
        if name in why:
            continue
        print(f'[kit] pip download {spec}', flush=True)
        pip_download([spec], dest)
        why[name] = reason
        for path in sorted(os.listdir(dest)):
            if dist_name(path) == name:
                queue += _requirements_to_fetch(osp.join(dest, path), name, why, skipped)
    print(f'[kit] pip download {MMCV} (sdist; built on the GPU machine with its CUDA ops)', flush=True)
    pip_download([MMCV], dest, sdist=True)
    why['mmcv'] = 'asked for (sdist)'
    sdist = next(f for f in os.listdir(dest) if dist_name(f) == 'mmcv')
    extra = _requirements_to_fetch(osp.join(dest, sdist), 'mmcv', why, skipped)
    for name, spec, reason in extra:
        if name not in why:
            print(f'[kit] pip download {spec}', flush=True)
            pip_download([spec], dest)
            why[name] = reason
    for spec in BUILD:
        print(f'[kit] pip download {spec} (to build mmcv)', flush=True)
        pip_download([spec], dest)
        why[norm(re.split(r'[=<>!~]', spec)[0])] = "builds mmcv (its setup.py imports pkg_resources)"
    files = sorted(os.listdir(dest))
    by_name = {}
    for f in files:
        by_name.setdefault(dist_name(f), []).append(f)
    dup = {n: fs for n, fs in by_name.items() if len(fs) > 1}
    if dup:
        raise RuntimeError(f'several versions of one package in {dest} (the install would stop): {dup}')
    print('[kit] requirements the GPU machine already has (not downloaded): '
          + ', '.join(f'{n}{s}' + (f' (as {SATISFIED_BY[n]})' if n in SATISFIED_BY else '')
                      for n, s in sorted(skipped.items())))
    return [(f, osp.getsize(osp.join(dest, f)), why.get(dist_name(f), '?')) for f in files]


def _requirements_to_fetch(path: str, owner: str, why: dict, skipped: dict) -> list:
    out = []
    for line in requirements_of(path):
        got = needed(line)
        if got is None:
            continue
        name, spec = got
        if name in PRESENT or SATISFIED_BY.get(name) in PRESENT:
            skipped[name] = spec
            continue
        if name not in why:
            out.append((name, name + spec, f'required by {owner}'))
    return out


# ------------------------------------------------------------------------------------------------- sizes
def repo_bytes() -> int:
    """Bytes of the files that travel with every call: tracked and untracked-not-ignored files."""
    res = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'git ls-files failed in {REPO}: {res.stderr.strip()}')
    total = 0
    for f in set(res.stdout.split('\0')):
        p = osp.join(REPO, f)
        if f and osp.isfile(p) and not osp.islink(p):
            total += osp.getsize(p)
    return total


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--busbra', required=True, help='the raw BUS-BRA folder (bus_data.csv, Images/, Masks/)')
    p.add_argument('--out', required=True, help='the kit folder (inside the repository, ignored by git, so '
                                                'that a device call can carry it)')
    p.add_argument('--skip-wheels', action='store_true', help='dataset only (keeps OUT/wheels as it is)')
    p.add_argument('--quality', type=int, default=90, help='first JPEG quality tried (default 90)')
    p.add_argument('--budget-mib', type=float, default=45.0,
                   help='aim for the compact dataset (MiB, default 45); quality is lowered to fit')
    p.add_argument('--workers', type=int, default=0, help='converter processes (0: min(4, cpus))')
    args = p.parse_args(argv)
    if not 1 <= args.quality <= 100:
        p.error(f'--quality must be 1..100, got {args.quality}')
    if args.budget_mib <= 0:
        p.error(f'--budget-mib must be positive, got {args.budget_mib}')
    if not osp.isdir(args.busbra):
        p.error(f'--busbra {args.busbra} is not a folder')
    if not osp.isfile(osp.join(args.busbra, 'bus_data.csv')):
        p.error(f'--busbra {args.busbra} has no bus_data.csv (not the raw BUS-BRA folder)')
    out = osp.abspath(args.out)
    if osp.exists(out) and not osp.isdir(out):
        p.error(f'--out {args.out} exists and is not a folder')
    # dot-entries are the temp folders of an interrupted run (replaced by the next one)
    if osp.isdir(out) and not {f for f in os.listdir(out) if not f.startswith('.')} <= {'busbra', 'wheels', 'COMMIT'}:
        p.error(f'--out {args.out} holds other files than busbra/ and wheels/; choose an empty or kit folder')
    return args


def write_commit(path: str) -> None:
    """The repository's commit (marked when the tree has changes) for the device run's record: the copy of
    the working tree that travels has no .git."""
    def git(*a):
        return subprocess.run(['git', *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    commit = git('rev-parse', 'HEAD') or 'unknown'
    if git('status', '--porcelain', '--untracked-files=no'):
        commit += ' (with uncommitted changes)'
    with open(path, 'w') as f:
        f.write(commit + '\n')


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    timings = {}
    try:
        with tempfile.TemporaryDirectory(prefix='busbra_coco_') as tmp:
            ann_dir = convert_busbra(args.busbra, tmp, args.workers)
            timings['convert'] = time.perf_counter() - t0
            t1 = time.perf_counter()
            summary = compact_within(args.busbra, ann_dir, osp.join(out, 'busbra'), args.quality,
                                     args.budget_mib)
            for f in ('split_summary.md', 'split_summary.json'):   # the split, for the record
                if osp.isfile(osp.join(ann_dir, f)):
                    shutil.copy(osp.join(ann_dir, f), osp.join(out, 'busbra', f))
            timings['compact'] = time.perf_counter() - t1
        write_commit(osp.join(out, 'COMMIT'))
        wheels = []
        if not args.skip_wheels:
            t1 = time.perf_counter()
            wheels = download_wheels(osp.join(out, 'wheels'))
            timings['wheels'] = time.perf_counter() - t1
    except (RuntimeError, ValueError, OSError) as exc:
        print(f'prepare_kit: error: {exc}', file=sys.stderr)
        return 1

    data = dir_bytes(osp.join(out, 'busbra'))
    whl = dir_bytes(osp.join(out, 'wheels'))
    tree = repo_bytes()
    total = data + whl + tree
    print(f'\n[kit] dataset: {mib(data)} ({summary["images"]} images, JPEG quality {summary["quality"]}; '
          + ', '.join(f'{s} {c["images"]}' for s, c in summary['counts'].items()) + ')')
    for f, size, why in wheels:
        print(f'[kit]   {f:<60} {size / 2 ** 20:6.2f} MiB  {why}')
    print(f'[kit] wheels: {mib(whl)} ({len(wheels) if wheels else "not downloaded now"}'
          f'{" files" if wheels else ""})')
    print(f'[kit] working tree (git ls-files, tracked + untracked not ignored): {mib(tree)}')
    print(f'[kit] total carried: {mib(total)} of the {LIMIT_MIB} MiB limit; '
          + ', '.join(f'{k} {v:.1f} s' for k, v in timings.items()))
    rel = osp.relpath(out, REPO)
    if rel.startswith('..'):
        print(f'[kit] WARNING: {out} is outside the repository; a device call carries only paths inside it')
    else:
        ignored = subprocess.run(['git', 'check-ignore', '-q', rel], cwd=REPO).returncode == 0
        if not ignored:
            print(f'[kit] WARNING: {rel} is not ignored by git: it would travel as part of the tree as well')
    print('\nDevice call (the run tool):')
    print(f'  carry=["{rel}"]')
    print(f'  command: bash tools/gpu/run_busbra.sh --kit {rel} --out "$OUT" --budget-s 540 --commit SHA')
    print('  timeout_s: 600; kind: the 141 GB card (nvidia-h200) where it is lent: its runs (an estimated '
          '60-80 GB) all fit at once; an 80 GB card runs 16 at a time, the learning curve last')
    print('Or two calls back to back on the warm machine (the second trains several times as long; the device keeps '
          'the ignored .gpu_site between calls; within 30 s of the first):')
    print(f'  1. bash tools/gpu/run_busbra.sh --kit {rel} --out "$OUT" --site .gpu_site --setup-only --budget-s 360 '
          '--commit SHA   (timeout_s 420)')
    print(f'  2. bash tools/gpu/run_busbra.sh --kit {rel} --out "$OUT" --site .gpu_site --no-smoke --budget-s 460 '
          '--commit SHA   (timeout_s: the device time left, at most 600; --budget-s 60 s under it)')
    print('Afterwards, unpack the results here:')
    print('  python tools/gpu/collect_results.py OUT/busbra_gpu.tar.gz')
    if total > LIMIT_MIB * 2 ** 20:
        print(f'prepare_kit: error: {mib(total)} is over the {LIMIT_MIB} MiB a device call carries',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
