"""What a study spec may say and what it plans: the keys the engine reads (anything else is a misspelling,
refused with the nearest known key), the grid of a spec as (point, methods), and the dotted-key overrides
that point a shipped config at the study's data (applied by :func:`.configs.derive_config`)."""
import difflib
import itertools
import json
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from mmbus.reporting.methods import method_info
from .configs import has_key, shipped_config

#: top-level keys of a spec; names starting with ``_`` are the spec file's helper variables, not keys
SPEC_KEYS = ('name', 'work_dir', 'schedule', 'data', 'detector', 'detectors', 'crops', 'train_crops', 'methods',
             'grid', 'test_sets', 'extras', 'export_teacher', 'calibrate', 'export_bundle', 'report', 'toy')
_CONVERTED = ('root', 'seed', 'ratios', 'balanced', 'where', 'where_not')
#: ``data`` keys per ``data.type``
DATA_KEYS = {
    'synthetic_hospitals': ('type', 'images', 'difficulty') + _CONVERTED,
    'dataset': ('type', 'format', 'format_options', 'external_root', 'external_format', 'external_format_options',
                'external_where', 'external_title') + _CONVERTED,
    'coco': ('type', 'root', 'title', 'seed'),
    'synthetic_crops': ('type', 'counts', 'difficulty', 'framing', 'gain', 'balanced_basic'),
    'crops': ('type', 'root'),
}
#: data types whose folders are the user's: a toy run reads them as they are (see :func:`with_toy_data`)
USER_DATA = {'dataset': ('root', 'external_root'), 'coco': ('root', ), 'crops': ('root', )}
TOY_KEYS = ('data', 'detector', 'detectors', 'classifier', 'methods', 'grid')
#: grid keys besides the dotted keys of the methods' configs (``methods``: an entry's methods)
GRID_KEYS = ('seed', 'labelled_share', 'methods')
RUNTIME_SECTIONS = ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator')


def _hint(key: str, known) -> str:
    near = difflib.get_close_matches(key, sorted(known), n=3)
    return f"; did you mean {', '.join(repr(k) for k in near)}?" if near else ''


def _refuse(what: str, key: str, known, context: str = '') -> None:
    raise ValueError(f"unknown {what} {key!r}{context}{_hint(key, known)} (known: {', '.join(sorted(known))})")


def _check(what: str, keys, known, context: str = '') -> None:
    for k in keys:
        if not k.startswith('_') and k not in known:
            _refuse(what, k, known, context)


def check_spec_keys(spec) -> None:
    """Refuse a top-level, ``data``, ``toy``, ``toy.data`` or ``report.targets`` key the engine does not read,
    naming the nearest known ones: a misspelled key must not run a study that ignores it."""
    _check('spec key', spec.keys(), SPEC_KEYS)
    data = spec.get('data')
    if not isinstance(data, dict) or 'type' not in data:
        raise ValueError(f"data.type is required (one of {', '.join(DATA_KEYS)})")
    if data['type'] not in DATA_KEYS:
        _refuse('data.type', data['type'], DATA_KEYS)
    _check('data key', data, DATA_KEYS[data['type']], f" for data.type={data['type']!r}")
    toy = spec.get('toy') or {}
    _check('toy key', toy, TOY_KEYS)
    report = spec.get('report') or {}
    if report.get('targets'):
        from mmbus.reporting.targets import TARGET_KEYS
        known = TARGET_KEYS.get(report.get('type', 'paper'), ())
        for k in report['targets']:
            if k not in known:
                _refuse('report.targets key', k, known, f" for report.type={report.get('type', 'paper')!r}")
    _check('toy.data key', toy.get('data') or {}, sorted({k for keys in DATA_KEYS.values() for k in keys}))


def with_toy_data(data: dict, toy_data: Optional[dict]) -> dict:
    """``data`` with a toy run's ``toy.data`` overrides. The toy shrinks generated data; it never replaces
    the folder of a user's data (``root``/``external_root`` of ``dataset``, ``coco``, ``crops``), and keys
    its data type does not read (a toy inherited from a spec of another data type) are left out."""
    out = dict(data)
    kind = out['type']
    for k, v in (toy_data or {}).items():
        if k in DATA_KEYS[kind] and k not in USER_DATA.get(kind, ()):
            out[k] = v
    return out


def check_grid_keys(grid, methods: Dict[str, dict], schedule: str, where: str = 'grid') -> None:
    """Refuse a grid key that is neither ``seed``, ``labelled_share`` (``methods`` in an entry) nor a
    dotted key of the shipped config of every method its entry runs (or one of that method's overrides)."""
    from mmengine.config import Config
    if not grid:
        return
    cfgs: Dict[str, object] = {}
    for entry in [grid] if isinstance(grid, dict) else list(grid):
        for key in entry:
            if key in GRID_KEYS:
                continue
            lacking, known = [], set(GRID_KEYS)
            for m in entry.get('methods') or methods:
                if m not in methods:
                    continue  # grid_plan names it
                if m not in cfgs:
                    cfgs[m] = Config.fromfile(shipped_config(methods[m].get('config', method_info(m)['config']),
                                                             schedule))
                if not (has_key(cfgs[m], key) or key in methods[m].get('overrides', {})):
                    lacking.append(m)
                    known.update(k for k, _ in _leaves(cfgs[m].to_dict(), ''))
            if lacking:
                raise ValueError(f'unknown {where} key {key!r}{_hint(key, known)} (a grid key is seed, labelled_share '
                                 f"or a dotted key of the methods' configs; not in the config of {', '.join(lacking)})")


# -- the grid --------------------------------------------------------------------------------------------
def grid_points(grid: dict) -> List[dict]:
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(list(grid[k]) for k in keys))] or [{}]


def grid_plan(grid, methods: Sequence[str]) -> List[Tuple[dict, List[str]]]:
    """(point, methods) of a spec's ``grid``: one dict crossed into points, or a list of such dicts (the union
    of their points, e.g. three seeds at one labelled share plus a learning curve at one seed), each of which
    may name the ``methods`` its points run (default: all). A point in several entries (its keys in any order)
    runs the union. Two different points whose :func:`grid_id` (their folder and row names) would be the same
    are an error."""
    entries = [grid] if isinstance(grid, dict) or not grid else list(grid)
    plan: Dict[str, Tuple[dict, List[str]]] = {}
    for entry in entries:
        entry = dict(entry)
        only = list(entry.pop('methods', None) or methods)
        unknown = [m for m in only if m not in methods]
        if unknown:
            raise ValueError(f'grid entry {entry}: methods {unknown} are not among the study\'s {list(methods)}')
        for point in grid_points(entry):
            key = json.dumps(point, sort_keys=True, default=repr)  # the point, whatever its keys' order
            if key in plan:
                plan[key][1].extend(m for m in only if m not in plan[key][1])
            else:
                plan[key] = (point, list(only))  # its own list: a later entry may add to this point only
    ids: Dict[str, dict] = {}
    for point, ms in plan.values():
        ms.sort(key=list(methods).index)
        other = ids.setdefault(grid_id(point), point)
        if other is not point:
            raise ValueError(f'grid points {other} and {point} would share the name {grid_id(point)!r}, which '
                             'names their runs, subsets and rows (grid keys that end in the same word cannot be '
                             'told apart)')
    return list(plan.values()) or [({}, list(methods))]


def grid_id(point: dict) -> str:
    short = {'labelled_share': 'share'}
    parts = []
    for k, v in point.items():
        name = short.get(k, k.split('.')[-1])
        # two decimals where they say the value exactly (0.05, 0.10), else the shortest exact form (0.125)
        parts.append(f'{name}{v:.2f}' if isinstance(v, float) and float(f'{v:.2f}') == v
                     else f'{name}{v!r}' if isinstance(v, float) else f'{name}{v}')
    return '_'.join(parts)


# -- dotted-key overrides of a shipped config ----------------------------------------------------------------
def _leaves(node, key: str) -> Iterator[Tuple[str, object]]:
    """(dotted key, value) of every leaf under ``node``; list items by index, as ``--cfg-options``."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        yield key, node
        return
    for k, v in items:
        yield from _leaves(v, f'{key}.{k}' if key else str(k))


def find_values(cfg, pred, sections: Sequence[str] = RUNTIME_SECTIONS) -> Dict[str, object]:
    """Dotted key -> value of every leaf in the runtime sections for which ``pred(key, value)`` holds:
    the input of overrides such as moving a config's data to another folder."""
    return {k: v for sec in sections if sec in cfg
            for k, v in _leaves(cfg[sec], sec) if pred(k.rsplit('.', 1)[-1], v)}


def rebase_overrides(cfg, new_root: str, ann_root: Optional[str] = None) -> Dict[str, str]:
    """Overrides that move every path under the config's ``data_root`` to ``new_root``; with ``ann_root``,
    ``annotations/<split>.json`` files are taken from ``<ann_root>/annotations/`` instead."""
    roots = list(find_values(cfg, lambda k, v: k == 'data_root').values())
    if not (cfg.get('data_root') or roots):
        raise ValueError(f'{cfg.filename}: no data_root to move to {new_root}')
    old = str(cfg.get('data_root') or roots[0])
    old = old.rstrip('/') + '/'
    new = osp.abspath(new_root).rstrip('/') + '/'
    out = {}
    for k, v in find_values(cfg, lambda k, v: isinstance(v, str)).items():
        if ann_root and 'annotations/' in v and v.endswith('.json'):
            out[k] = osp.join(ann_root, 'annotations', v.split('annotations/', 1)[1])
        elif v.rstrip('/') + '/' == old:
            out[k] = new
        elif v.startswith(old):
            out[k] = new + v[len(old):]
    return out


def metric_index(cfg, section: str, metric_type: str) -> List[int]:
    ev = cfg[section] if isinstance(cfg[section], (list, tuple)) else [cfg[section]]
    return [i for i, m in enumerate(ev) if m.get('type') == metric_type]
