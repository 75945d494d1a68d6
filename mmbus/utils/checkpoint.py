"""The one checkpoint loader of mmbus, and the checks that a checkpoint is what a tool is about to use.

* :func:`load_checkpoint_safely` reads a file with ``torch.load(weights_only=True)`` and the allow-list of
  :func:`allow_mmengine_checkpoints` (the non-tensor types mmengine writes). A pickle asking for anything
  else (a crafted ``.pth`` can run a shell command when it is unpickled) is refused, and so is a truncated or
  corrupt file, each with a :class:`CheckpointError` that names the file. :func:`register_safe_local_loader` puts
  it behind mmengine's ``CheckpointLoader`` for local paths, so ``Runner.load_checkpoint`` / ``resume``,
  ``mmdet.apis.init_detector``, ``mmpretrain.apis.init_model`` and the inferencers use it too.
* :func:`check_checkpoint_fits` compares a checkpoint's state dict with the model built from a config: a
  checkpoint of another model (a detector on a classifier config, or the reverse) would otherwise load with
  a few "missing keys" warnings and give believable numbers from untrained weights.
* :func:`find_checkpoint` is the checkpoint of a work dir (the best one on request), and
  :func:`find_resumable_checkpoint` is ``--resume`` without a path: the checkpoint ``last_checkpoint`` names,
  verified, else the newest intact ``epoch_*.pth`` / ``iter_*.pth``, else a message naming what to delete.

:mod:`mmbus.compat` applies the allow-list and the loader at import time; this module imports nothing of mmbus
(torch, numpy and mmengine only inside the functions that need them).
"""
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Dict, Iterable, List, Optional, Tuple


class CheckpointError(ValueError):
    """A checkpoint file that cannot (or must not) be used; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for Python objects outside the allow-list (it could run code)."""


class CorruptCheckpointError(CheckpointError):
    """Empty, truncated or otherwise unreadable file."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's weights do not belong to the model the config builds."""


# ------------------------------------------------------------------------------------------- allow-list
def _numpy_types():
    """numpy objects that appear in pickled arrays, scalars and dtypes (numpy 1.x and 2.x names)."""
    import numpy as np
    types = [np.ndarray, np.dtype]
    core = getattr(np, '_core', None) or np.core
    types += [core.multiarray._reconstruct, core.multiarray.scalar]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25: one class per dtype (Float64DType, ...)
    if dtypes is not None:
        types += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType') and isinstance(getattr(dtypes, n), type)]
    return types


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling: a ``HistoryBuffer`` pickles its statistics
    methods as ``getattr(HistoryBuffer, 'min')``; nothing else may be looked up."""
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for attribute {name!r} of {obj!r}; only HistoryBuffer statistics are allowed')


def allow_mmengine_checkpoints():
    """Allow-list the non-tensor types of mmengine checkpoints for ``torch.load(weights_only=True)``."""
    import torch
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 loads everything anyway
        return
    from mmengine.logging import HistoryBuffer
    safe = [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_types()
    try:  # numpy 1.x pickles reference numpy.core.multiarray even when numpy 2 loads them
        import numpy.core.multiarray as legacy_multiarray
        safe.append(legacy_multiarray._reconstruct)
    except Exception:  # pragma: no cover - numpy without the legacy alias
        pass
    add_safe_globals(safe)


_SAFE_LOADING = []


def use_safe_loading() -> None:
    """The allow-list and the safe local loader (:func:`register_safe_local_loader`) in place, once."""
    if not _SAFE_LOADING:
        allow_mmengine_checkpoints()
        register_safe_local_loader()
        _SAFE_LOADING.append(True)


# ---------------------------------------------------------------------------------------------- loading
def _unsafe_detail(message: str) -> str:
    for line in message.splitlines():
        line = line.strip()
        if line.startswith(('Trying to load unsupported GLOBAL', 'Unsupported global', 'Unsupported operand',
                            'Unsupported class')):
            return line
    return 'objects beyond tensors and plain data'


def load_checkpoint_safely(filename: str, map_location='cpu', mmap: bool = False):
    """``torch.load`` with ``weights_only=True`` (mmengine's own types allow-listed, see
    :func:`allow_mmengine_checkpoints`).

    Args:
        filename: a local ``.pth`` file.
        map_location: as for :func:`torch.load`.
        mmap: map the tensors instead of reading them (a cheap integrity check of a zip checkpoint).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds Python objects that are not allowed (it could run code).
        CorruptCheckpointError: empty, truncated or not a checkpoint at all.
    """
    import torch

    use_safe_loading()  # the allow-list must be in place
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    size = osp.getsize(filename)
    if size == 0:
        raise CorruptCheckpointError(f'checkpoint {filename} is empty (0 bytes): it was not written completely; '
                                     'delete it')
    if mmap and not zipfile.is_zipfile(filename):
        mmap = False  # legacy (non-zip) files cannot be mapped; a truncated zip fails below with a clear error
    try:
        return torch.load(filename, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if 'Weights only load failed' in str(e) and 'GLOBAL' in str(e):
            raise UnsafeCheckpointError(
                f'refused to load checkpoint {filename}: it holds Python objects other than weights '
                f'({_unsafe_detail(str(e))}); unpickling them could run code. Use checkpoints written by '
                'mmengine/mmbus training or tools/export_teacher.py; if you wrote this file yourself and trust '
                'it, save its tensors again with torch.save(dict(state_dict=...), path).') from None
        raise CorruptCheckpointError(
            f'checkpoint {filename} ({size} bytes) is corrupt or not a PyTorch checkpoint '
            f'({_unsafe_detail(str(e))}); it was not loaded. Delete it (or copy it again)') from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile,
            UnicodeDecodeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split('. ')[0].rstrip('.')  # torch appends a paragraph of advice
        raise CorruptCheckpointError(
            f'checkpoint {filename} ({size} bytes) is truncated or corrupt and cannot be read ({first}); '
            'delete it (or copy it again)') from None


def verify_checkpoint(filename: str) -> None:
    """Raise :class:`CheckpointError` / ``FileNotFoundError`` unless ``filename`` loads; cheap for zip files."""
    ckpt = load_checkpoint_safely(filename, map_location='cpu', mmap=True)
    if not isinstance(ckpt, dict):
        raise CorruptCheckpointError(f'checkpoint {filename} holds a {type(ckpt).__name__}, not a dict')


def load_from_local(filename, map_location=None):
    """mmengine ``CheckpointLoader`` backend for local paths, through :func:`load_checkpoint_safely`."""
    return load_checkpoint_safely(filename, map_location=map_location)


def register_safe_local_loader() -> None:
    """Route mmengine's local-file checkpoint loading through :func:`load_checkpoint_safely` (idempotent).

    mmengine chooses the loader by the longest matching path prefix; the local loader has the empty prefix,
    so URLs (``https://``, ``open-mmlab://`` ...) keep their own loaders (which also call ``torch.load`` with
    its ``weights_only=True`` default and the same allow-list).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


# ----------------------------------------------------------------------------------------------- fit check
def state_dict_of(checkpoint) -> dict:
    """The state dict of an mmengine checkpoint (``checkpoint['state_dict']``) or of a bare state dict."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        return checkpoint['state_dict']
    return checkpoint if isinstance(checkpoint, dict) else {}


def describe_state_dict(keys: Iterable[str]) -> str:
    """A guess of what a state dict belongs to, from its keys (for error messages)."""
    keys = list(keys)
    if not keys:
        return 'no weights at all'
    if any(k.startswith(('rpn_head.', 'roi_head.', 'bbox_head.')) for k in keys):
        return 'a detector (rpn_head/roi_head weights)'
    if any(k.startswith(('teacher.', 'student.')) for k in keys):
        return 'a mean-teacher SemiClassifier (student/teacher weights)'
    if any(k.startswith('head.') for k in keys) and any(k.startswith('backbone.') for k in keys):
        return 'an image classifier (backbone/head weights)'
    heads = sorted({k.split('.')[0] for k in keys})
    return f"a model with top-level modules {', '.join(heads[:6])}"


def _strip_module_prefix(keys: Iterable[str]) -> List[str]:
    return [re.sub(r'^module\.', '', k) for k in keys]


def _expected_keys(model, ckpt_keys: List[str]) -> Dict[str, tuple]:
    """``{key: shape}`` the model's ``load_state_dict`` would fill from ``ckpt_keys``: a SemiClassifier also
    accepts a plain classifier state dict (``backbone.*`` -> ``student.*`` and ``teacher.*``)."""
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if hasattr(model, 'student') and hasattr(model, 'teacher') and \
            not any(k.startswith(('student.', 'teacher.')) for k in ckpt_keys):
        plain = {}
        for k, shape in expected.items():
            for p in ('student.', 'teacher.'):
                if k.startswith(p):
                    plain[k[len(p):]] = shape
        expected = plain or expected
    return expected


def fit_report(model, state_dict: dict) -> Tuple[int, int, List[str], List[str], List[str]]:
    """``(matched, model_total, missing, unexpected, wrong_shape)`` of ``state_dict`` against ``model``."""
    keys = _strip_module_prefix(state_dict)
    values = dict(zip(keys, state_dict.values()))
    expected = _expected_keys(model, keys)
    missing = [k for k in expected if k not in values]
    unexpected = [k for k in keys if k not in expected]
    wrong_shape = [k for k in expected if k in values and hasattr(values[k], 'shape')
                   and tuple(values[k].shape) != expected[k]]
    matched = len(expected) - len(missing) - len(wrong_shape)
    return matched, len(expected), missing, unexpected, wrong_shape


def check_checkpoint_fits(model, checkpoint, checkpoint_path: str, config_path: Optional[str] = None,
                          min_share: float = 0.5) -> Tuple[int, int]:
    """Raise :class:`CheckpointMismatchError` naming both files when the checkpoint's weights do not belong
    to ``model`` (built from ``config_path``).

    A mismatch is: fewer than ``min_share`` of the model's tensors found in the checkpoint with the right
    shape, or more than ``1 - min_share`` of the checkpoint's tensors unknown to the model. Smaller
    differences (a renamed layer, an extra buffer) are left to mmengine's missing/unexpected-key warnings.

    Returns:
        ``(matched, model_total)``.
    """
    state = state_dict_of(checkpoint)
    matched, total, missing, unexpected, wrong_shape = fit_report(model, state)
    share = matched / total if total else 1.0
    unexpected_share = len(unexpected) / len(state) if state else 1.0
    if share >= min_share and unexpected_share <= 1 - min_share and state:
        return matched, total
    model_name = type(model.module if hasattr(model, 'module') else model).__name__
    parts = [f'checkpoint {checkpoint_path} does not belong to the model of config {config_path}'
             if config_path else f'checkpoint {checkpoint_path} does not belong to this {model_name}',
             f'only {matched} of the {total} weights of the {model_name} are in it with the right shape',
             f'the checkpoint looks like {describe_state_dict(_strip_module_prefix(state))}']
    if missing:
        parts.append(f'missing e.g. {", ".join(missing[:3])}')
    if unexpected:
        parts.append(f'unexpected e.g. {", ".join(unexpected[:3])}')
    if wrong_shape:
        parts.append(f'other shapes e.g. {", ".join(wrong_shape[:3])}')
    if model_name == 'ImageClassifier' and any(k.startswith('teacher.') for k in _strip_module_prefix(state)):
        parts.append('a mean-teacher checkpoint needs its training config, or tools/export_teacher.py first')
    raise CheckpointMismatchError('; '.join(parts) + '. Use the checkpoint trained with this config (or the '
                                  'config it was trained with).')


# ------------------------------------------------------------------------------------------------ finding
_STEP_RE = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _training_checkpoints(work_dir: str) -> List[str]:
    """``epoch_N.pth`` / ``iter_N.pth`` of ``work_dir``, newest (largest N, then mtime) first."""
    if not osp.isdir(work_dir):
        return []
    found = []
    for name in os.listdir(work_dir):
        m = _STEP_RE.match(name)
        if m:
            path = osp.join(work_dir, name)
            found.append((int(m.group(2)), osp.getmtime(path), path))
    return [p for _, _, p in sorted(found, reverse=True)]


def _best_checkpoints(work_dir: str) -> List[str]:
    """``best_*.pth`` of ``work_dir`` (kept by ``CheckpointHook(save_best=...)``), oldest first."""
    if not osp.isdir(work_dir):
        return []
    return sorted((osp.join(work_dir, f) for f in os.listdir(work_dir)
                   if f.startswith('best_') and f.endswith('.pth')), key=lambda p: (osp.getmtime(p), p))


def _marked_checkpoint(work_dir: str) -> Optional[str]:
    """The file ``<work_dir>/last_checkpoint`` names (``None`` without a marker or with an empty one).

    mmengine writes the path as the run saw it: relative to the directory it ran in, or absolute in a
    work dir since moved or copied. A path outside ``work_dir`` is read as the file of that name in
    ``work_dir`` when there is one (a copied work dir resumes from its own checkpoint, not the original's,
    even while the original still exists); else as written (``CheckpointHook(out_dir=...)`` saves elsewhere).
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        named = f.read().strip() or None
    if named:
        own = osp.join(work_dir, osp.basename(named))
        outside = not osp.isfile(named) or not osp.samefile(osp.dirname(osp.abspath(named)), work_dir)
        if outside and osp.isfile(own):
            named = own
    return named


def find_checkpoint(work_dir: str, prefer_best: bool = False, log=print, required: bool = True) -> Optional[str]:
    """The checkpoint of a training work dir: the one finder of mmbus (tools, the study engine).

    With ``prefer_best``, the newest ``best_*.pth`` kept by ``CheckpointHook(save_best=...)`` (the model
    chosen on validation) when there is one. Otherwise the file ``<work_dir>/last_checkpoint`` names (a
    relative or stale absolute path is read in ``work_dir``, see :func:`_marked_checkpoint`) when it loads;
    else, with a warning through ``log``, the newest intact ``epoch_*.pth`` / ``iter_*.pth`` (``best_*.pth``
    is not taken there: it is not where training stopped).

    Args:
        work_dir: the training work dir.
        prefer_best: take the best checkpoint when there is one.
        log: receives the warning of a fallback.
        required: raise ``FileNotFoundError`` when the work dir has no checkpoint at all; else return ``None``.

    Raises:
        FileNotFoundError: no checkpoint at all (only with ``required``).
        CorruptCheckpointError: checkpoints exist but none loads; the message says what to delete.
    """
    if prefer_best:
        best = _best_checkpoints(work_dir)
        if best:
            return best[-1]
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = _marked_checkpoint(work_dir)
    problems = []
    if named:
        try:
            verify_checkpoint(named)
            return named
        except (CheckpointError, FileNotFoundError) as e:
            problems.append((named, str(e)))
    candidates = [p for p in _training_checkpoints(work_dir)
                  if not named or osp.abspath(p) != osp.abspath(named)]
    for path in candidates:
        try:
            verify_checkpoint(path)
        except (CheckpointError, FileNotFoundError) as e:
            problems.append((path, str(e)))
            continue
        if problems:
            log(f'WARNING: {problems[0][1]}. Using the previous intact checkpoint {path} instead')
        return path
    if not problems:
        if required:
            raise FileNotFoundError(f'no checkpoint in {work_dir} (no {pointer}); did training finish?')
        return None
    bad = [p for p, _ in problems if osp.isfile(p)]
    best = [osp.basename(p) for p in _best_checkpoints(work_dir)]
    hint = ''
    if best:
        hint = (f' (or resume from the best checkpoint on purpose: --resume {osp.join(work_dir, best[-1])})')
    delete = ' '.join(bad + [pointer]) if bad else pointer
    raise CorruptCheckpointError(
        f'cannot resume in {work_dir}: {problems[0][1]}. No intact epoch_*/iter_* checkpoint is left to resume '
        f'from; to start this run again from scratch, delete: {delete}{hint}')


def find_resumable_checkpoint(work_dir: str, log=print) -> Optional[str]:
    """The checkpoint ``--resume`` (no path) continues from, verified to load: :func:`find_checkpoint`
    without the best checkpoint, ``None`` when the work dir has no checkpoint at all (a fresh start)."""
    return find_checkpoint(work_dir, log=log, required=False)
