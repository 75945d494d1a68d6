"""Deriving a run's config from a shipped config: dotted keys through ``Config.merge_from_dict``, the
mechanism behind ``--cfg-options``; nothing else rewrites configs."""
import os.path as osp
from typing import Dict, Optional

from mmbus.reporting.context import REPO_ROOT
from mmbus.utils.io import atomic_write

#: the one vocabulary of schedules: the file suffix of the shipped config each one uses ('toy' is the
#: cpu-quick config cut to a few iterations by the study's ``toy`` overrides; for tests).
SCHEDULES = {'cpu-quick': '_cpu_quick', 'paper': '', 'toy': '_cpu_quick'}


def shipped_config(stem: str, schedule: str) -> str:
    """Path of ``configs/mmbus/<stem><suffix>.py`` for a schedule; a path ending in ``.py`` is used as
    it is (relative to the repository)."""
    if schedule not in SCHEDULES:
        raise ValueError(f'unknown schedule {schedule!r}; choose from {sorted(SCHEDULES)}')
    if stem.endswith('.py'):
        path = stem if osp.isabs(stem) else osp.join(REPO_ROOT, stem)
    else:
        path = osp.join(REPO_ROOT, 'configs', 'mmbus', f'{stem}{SCHEDULES[schedule]}.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'config not found: {path}')
    return path


def derive_config(src: str, overrides: Optional[Dict[str, object]] = None, out: Optional[str] = None):
    """``src`` with ``overrides`` (``{'train_cfg.max_iters': 2, 'param_scheduler.0.end': 2, ...}``; list
    items by index, as ``--cfg-options``), dumped atomically to ``out`` when given. Returns the Config.

    A key whose parent does not exist in the config is an error: a misspelled override must not create
    a new, unused setting silently.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(src)
    overrides = dict(overrides or {})
    for key in overrides:
        parts = key.split('.')
        found = _found_parts(cfg, parts[:-1])
        if found < len(parts) - 1:
            raise KeyError(f'override {key!r}: {".".join(parts[:found + 1])!r} is not in {src}')
    if overrides:
        cfg.merge_from_dict(overrides, allow_list_keys=True)
    if out is not None:
        atomic_write(out, cfg.dump)
    return cfg


def _found_parts(cfg, parts) -> int:
    """How many leading ``parts`` of a dotted key walk down ``cfg`` (list items by index)."""
    node = cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg
    for i, part in enumerate(parts):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return i
    return len(parts)


def has_key(cfg, key: str) -> bool:
    """Whether the dotted ``key`` names an existing setting of ``cfg``."""
    parts = key.split('.')
    return _found_parts(cfg, parts) == len(parts)
