"""Export the mean teacher of a trained SemiClassifier as a plain mmpretrain
``ImageClassifier`` (checkpoint + config) that stock mmpretrain tools load
(``mmpretrain.apis.init_model`` / ``ImageClassificationInferencer`` /
``tools/test.py``).

Why the teacher: in mean teacher training the EMA teacher is the better,
smoother model and is the one the paper evaluates; the student is dropped.
"""
import copy
import os
import os.path as osp
import tempfile
from typing import Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict

#: keys that an ImageClassifier accepts.
_CLASSIFIER_KEYS = ('backbone', 'neck', 'head', 'pretrained', 'train_cfg',
                    'data_preprocessor', 'init_cfg')
#: top-level config entries that only make sense for (semi-)training.
_TRAIN_ONLY_CFG_KEYS = ('train_dataloader', 'train_cfg', 'optim_wrapper',
                        'param_scheduler', 'auto_scale_lr', 'custom_hooks',
                        'resume', 'load_from')


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


def plain_config(cfg: Config) -> Config:
    """A copy of a (semi-)training config with the model replaced by the
    plain teacher classifier and training-only entries removed, so stock
    mmpretrain inference and ``tools/test.py`` run it."""
    cfg = copy.deepcopy(cfg)
    cfg.model = plain_classifier_cfg(cfg.model)
    for k in _TRAIN_ONLY_CFG_KEYS:
        if k in cfg:
            cfg.pop(k)
    cfg.setdefault('default_scope', 'mmpretrain')
    return cfg


def _atomic_torch_save(obj, path: str) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=osp.dirname(osp.abspath(path)), suffix='.tmp')
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def export_teacher(config: str,
                   checkpoint: str,
                   out_dir: str,
                   name: str = 'teacher') -> Tuple[str, str]:
    """Write ``<out_dir>/<name>.pth`` and ``<out_dir>/<name>_config.py``.

    Args:
        config: the SemiClassifier training config (path).
        checkpoint: a checkpoint saved by that training run.
        out_dir: output folder.

    Returns:
        ``(checkpoint_path, config_path)`` of the exported classifier.
    """
    for path, what in ((config, 'classifier config'),
                       (checkpoint, 'classifier checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    import mmbus.registry  # noqa: F401  (checkpoint-loading compatibility)
    cfg = Config.fromfile(config)
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False)
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict) or not state:
        raise ValueError(f'{checkpoint} holds no state dict')
    plain_state = teacher_state_dict(state)
    pcfg = plain_config(cfg)
    meta = dict(ckpt.get('meta', {}) or {})
    meta.update(
        exported_from=osp.abspath(checkpoint),
        exported_part='teacher' if len(plain_state) != len(state)
        or any(k.startswith('teacher.') for k in state) else 'whole model',
        dataset_meta=meta.get('dataset_meta',
                              dict(classes=('benign', 'malignant'))))
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = osp.join(out_dir, f'{name}.pth')
    cfg_path = osp.join(out_dir, f'{name}_config.py')
    _atomic_torch_save(dict(state_dict=plain_state, meta=meta), ckpt_path)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix='.py')
    os.close(fd)
    try:
        pcfg.dump(tmp)
        os.replace(tmp, cfg_path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return ckpt_path, cfg_path


def load_plain_classifier(config, checkpoint: Optional[str] = None,
                          device: str = 'cpu'):
    """Build the plain (teacher) classifier from a SemiClassifier or a plain
    ImageClassifier config + checkpoint, in memory (no files written)."""
    import mmbus.registry  # noqa: F401
    from mmengine.runner import load_state_dict
    from mmpretrain.apis import init_model
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    pcfg = plain_config(cfg)
    model = init_model(pcfg, None, device=device)
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'classifier checkpoint not found: {checkpoint}')
        ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False)
        state = teacher_state_dict(ckpt.get('state_dict', ckpt))
        load_state_dict(model, state, strict=True)
        meta = ckpt.get('meta', {}) or {}
        model.dataset_meta = meta.get(
            'dataset_meta', dict(classes=('benign', 'malignant')))
    else:
        model.dataset_meta = dict(classes=('benign', 'malignant'))
    model.eval()
    return model, pcfg
