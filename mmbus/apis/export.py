"""Export the mean teacher of a trained SemiClassifier as a plain mmpretrain
``ImageClassifier`` (checkpoint + config) that stock mmpretrain tools load
(``mmpretrain.apis.init_model`` / ``ImageClassificationInferencer`` /
``tools/test.py``), and the teacher of a semi-supervised detector (SoftTeacher,
GatedSoftTeacher) as a plain detector checkpoint
(:func:`export_teacher_detector`).

Why the teacher: in mean teacher training the EMA teacher is the better,
smoother model and is the one the paper evaluates; the student is dropped.

Checkpoints are read with :func:`mmbus.utils.checkpoint.load_checkpoint_safely`
(weights only: a crafted file cannot run code) and checked against the model
the config builds (a detector checkpoint is refused, naming both files).

Stock inference on file paths: ``ImageClassificationInferencer`` drops the
config's ``LoadImageFromFile`` and reads every path in colour (3 channels),
while the mean-teacher network takes grey crops (1 channel). The exported
config therefore converts a colour image to grey right after loading
(:data:`TO_GREY`: mmcv's ``RandomGrayscale`` with probability 1 and OpenCV's
own luminance weights, exact for grey images); a grey image passes through
unchanged, so ``tools/test.py`` on the exported config reads the crops as
before.
"""
import copy
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config, ConfigDict

from mmbus.classes import CLASSES
from mmbus.utils.checkpoint import (CheckpointMismatchError,
                                    check_checkpoint_fits,
                                    describe_state_dict,
                                    load_checkpoint_safely, state_dict_of)
from mmbus.utils.io import atomic_torch_save, atomic_write, make_dirs
from .pipeline_colour import is_grey_loader

#: keys that an ImageClassifier accepts.
_CLASSIFIER_KEYS = ('backbone', 'neck', 'head', 'pretrained', 'train_cfg',
                    'data_preprocessor', 'init_cfg')
#: top-level config entries that only make sense for (semi-)training.
_TRAIN_ONLY_CFG_KEYS = ('train_dataloader', 'train_cfg', 'optim_wrapper',
                        'param_scheduler', 'auto_scale_lr', 'custom_hooks',
                        'resume', 'load_from')
#: colour -> grey after loading, for a 1-channel network behind a loader that
#: reads colour (stock ImageClassificationInferencer). OpenCV's BGR2GRAY
#: weights in 1/16384 units: a grey pixel (B == G == R) keeps its value
#: exactly; colour pixels end within 1 grey level of cv2 (truncation).
TO_GREY = dict(type='RandomGrayscale', prob=1.0, keep_channels=False,
               channel_weights=(1868, 9617, 4899), color_format='bgr')


def plain_classifier_cfg(model_cfg) -> ConfigDict:
    """The ``ImageClassifier`` config equivalent to a SemiClassifier's
    teacher.

    Accepts either layout: ``student=dict(type='ImageClassifier', ...)`` /
    ``teacher=dict(...)`` sub-configs, or ``backbone/neck/head`` given
    directly on the SemiClassifier.  A config that is already a plain
    classifier is returned unchanged (copied).
    """
    model_cfg = ConfigDict(copy.deepcopy(dict(model_cfg)))
    if model_cfg.get('type') in ('ImageClassifier',
                                 'mmpretrain.ImageClassifier'):
        return model_cfg
    sub = model_cfg.get('teacher') or model_cfg.get('student')
    if isinstance(sub, dict):
        plain = ConfigDict(copy.deepcopy(dict(sub)))
    else:
        plain = ConfigDict({
            k: copy.deepcopy(v)
            for k, v in model_cfg.items()
            if k in _CLASSIFIER_KEYS and k != 'train_cfg'
        })
    plain['type'] = 'ImageClassifier'
    if 'data_preprocessor' not in plain and 'data_preprocessor' in model_cfg:
        plain['data_preprocessor'] = copy.deepcopy(
            model_cfg['data_preprocessor'])
    for k in list(plain):
        if k not in _CLASSIFIER_KEYS + ('type', ):
            plain.pop(k)
    if 'backbone' not in plain or 'head' not in plain:
        raise ValueError('cannot find backbone/head of the teacher in the '
                         f'model config: {dict(model_cfg)}')
    return plain


def teacher_state_dict(state_dict: dict, prefix: str = 'teacher.') -> dict:
    """Keep ``teacher.*`` entries with the prefix removed.

    ``data_preprocessor.*`` buffers of the outer model (if any) are kept as
    they are, since the plain classifier owns its preprocessor directly.
    A state dict without any ``teacher.`` key is returned unchanged (a plain
    classifier checkpoint, e.g. a supervised baseline).
    """
    if not any(k.startswith(prefix) for k in state_dict):
        return dict(state_dict)
    out = {}
    for k, v in state_dict.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif k.startswith('data_preprocessor.'):
            out.setdefault(k, v)
    return out


def _in_channels(model_cfg) -> Optional[int]:
    n = (model_cfg.get('backbone') or {}).get('in_channels')
    return int(n) if isinstance(n, int) else None


def _grey_safe_pipeline(pipeline):
    """``pipeline`` with :data:`TO_GREY` after a grey ``LoadImageFromFile``
    (unless it is there already)."""
    if any(t.get('type') == TO_GREY['type'] for t in pipeline):
        return list(pipeline)
    out = []
    for t in pipeline:
        out.append(t)
        if is_grey_loader(t):
            out.append(dict(TO_GREY))
    return out


def plain_config(cfg: Config) -> Config:
    """A copy of a (semi-)training config with the model replaced by the
    plain teacher classifier and training-only entries removed, so stock
    mmpretrain inference and ``tools/test.py`` run it. A 1-channel network
    gets :data:`TO_GREY` in its test/val pipelines (see the module doc)."""
    cfg = copy.deepcopy(cfg)
    cfg.model = plain_classifier_cfg(cfg.model)
    for k in _TRAIN_ONLY_CFG_KEYS:
        if k in cfg:
            cfg.pop(k)
    cfg.setdefault('default_scope', 'mmpretrain')
    if _in_channels(cfg.model) == 1:
        for key in ('test_dataloader', 'val_dataloader'):
            ds = (cfg.get(key) or {}).get('dataset') or {}
            if isinstance(ds.get('pipeline'), list):
                ds['pipeline'] = _grey_safe_pipeline(ds['pipeline'])
    return cfg


def _build_plain(pcfg):
    import mmbus.registry  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(copy.deepcopy(pcfg.model))


def load_teacher_state(checkpoint: str, pcfg, config: str,
                       model=None) -> Tuple[dict, dict, dict]:
    """Read ``checkpoint`` safely and reduce it to the plain classifier's
    state dict.

    Raises:
        FileNotFoundError: no such checkpoint.
        CheckpointError: the file is refused (not weights only), corrupt, or
            (:class:`CheckpointMismatchError`, naming the checkpoint and
            ``config``) not a checkpoint of that classifier.

    Returns:
        ``(plain_state, full_state, checkpoint)``.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'classifier checkpoint not found: {checkpoint}')
    ckpt = load_checkpoint_safely(checkpoint, map_location='cpu')
    state = state_dict_of(ckpt)
    if not state:
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} holds no state dict (config {config})')
    plain_state = teacher_state_dict(state)
    model = _build_plain(pcfg) if model is None else model
    check_checkpoint_fits(model, plain_state, checkpoint, config)
    return plain_state, state, ckpt if isinstance(ckpt, dict) else {}


def export_teacher(config: str,
                   checkpoint: str,
                   out_dir: str,
                   name: str = 'teacher') -> Tuple[str, str]:
    """Write ``<out_dir>/<name>.pth`` and ``<out_dir>/<name>_config.py``
    (atomically, with the permissions the umask gives).

    Args:
        config: the SemiClassifier training config (path).
        checkpoint: a checkpoint saved by that training run.
        out_dir: output folder.

    Returns:
        ``(checkpoint_path, config_path)`` of the exported classifier.

    Raises:
        FileNotFoundError: a missing input (named).
        CheckpointError: see :func:`load_teacher_state`; nothing is written.
    """
    for path, what in ((config, 'classifier config'),
                       (checkpoint, 'classifier checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    import mmbus.registry  # noqa: F401  (checkpoint-loading compatibility)
    cfg = Config.fromfile(config)
    pcfg = plain_config(cfg)
    plain_state, state, ckpt = load_teacher_state(checkpoint, pcfg, config)
    meta = dict(ckpt.get('meta', {}) or {})
    meta.update(
        exported_from=osp.abspath(checkpoint),
        exported_part='teacher' if len(plain_state) != len(state)
        or any(k.startswith('teacher.') for k in state) else 'whole model',
        dataset_meta=meta.get('dataset_meta',
                              dict(classes=CLASSES)))
    make_dirs(out_dir)
    ckpt_path = osp.join(out_dir, f'{name}.pth')
    cfg_path = osp.join(out_dir, f'{name}_config.py')
    atomic_torch_save(dict(state_dict=plain_state, meta=meta), ckpt_path)
    atomic_write(cfg_path, pcfg.dump)
    return ckpt_path, cfg_path


def load_plain_classifier(config, checkpoint: Optional[str] = None,
                          device: str = 'cpu'):
    """Build the plain (teacher) classifier from a SemiClassifier or a plain
    ImageClassifier config + checkpoint, in memory (no files written).
    The checkpoint is read and checked as by :func:`load_teacher_state`."""
    import mmbus.registry  # noqa: F401
    from mmengine.runner import load_state_dict
    from mmpretrain.apis import init_model
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    cfg_name = config if isinstance(config, str) else \
        (getattr(cfg, 'filename', None) or 'the given config')
    pcfg = plain_config(cfg)
    model = init_model(pcfg, None, device=device)
    if checkpoint is not None:
        state, _, ckpt = load_teacher_state(checkpoint, pcfg, cfg_name, model)
        try:
            load_state_dict(model, state, strict=True)
        except RuntimeError as e:
            raise CheckpointMismatchError(
                f'checkpoint {checkpoint} does not fully fit config '
                f'{cfg_name}: {e}') from None
        meta = ckpt.get('meta', {}) or {}
        model.dataset_meta = meta.get(
            'dataset_meta', dict(classes=CLASSES))
    else:
        model.dataset_meta = dict(classes=CLASSES)
    model.eval()
    return model, pcfg


#: top-level modules of which a detector's state dict has at least one.
_DETECTOR_HEADS = ('rpn_head.', 'roi_head.', 'bbox_head.')


def export_teacher_detector(checkpoint: str, out_file: str) -> str:
    """Write the teacher of a semi-supervised detector checkpoint
    (SoftTeacher / GatedSoftTeacher: ``teacher.*`` keys) as a plain detector
    checkpoint (``meta`` kept, no optimiser state), loadable with the
    supervised detector's config (e.g. for crop extraction).

    The checkpoint is read with
    :func:`mmbus.utils.checkpoint.load_checkpoint_safely` (weights only) and
    the result written atomically, with the permissions the umask gives.

    Returns:
        ``out_file``.

    Raises:
        FileNotFoundError: no such checkpoint.
        CheckpointError: the file is refused, corrupt, or
            (:class:`CheckpointMismatchError`) holds no detector teacher;
            nothing is written.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'SoftTeacher checkpoint not found: {checkpoint}')
    ckpt = load_checkpoint_safely(checkpoint, map_location='cpu')
    state = state_dict_of(ckpt)
    teacher = {
        k[len('teacher.'):]: v
        for k, v in state.items() if k.startswith('teacher.')
    }
    if not teacher:
        raise CheckpointMismatchError(
            f'{checkpoint} holds no teacher.* weights: not a SoftTeacher '
            '(semi-supervised detector) checkpoint; it looks like '
            f'{describe_state_dict(state)}')
    if not any(k.startswith(_DETECTOR_HEADS) for k in teacher):
        raise CheckpointMismatchError(
            f'{checkpoint} holds the teacher of '
            f'{describe_state_dict(teacher)}, not of a detector (a '
            'mean-teacher classifier is exported by tools/export_teacher.py)')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    atomic_torch_save(dict(meta=meta, state_dict=teacher), out_file)
    return out_file
