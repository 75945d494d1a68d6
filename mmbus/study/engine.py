"""The study engine: a study spec (``configs/studies/*.py``) -> stages -> result rows -> report.

A spec names the data, the detector (optional), the crop sets, the stage-2 methods (shipped configs plus
dotted-key overrides), a grid (``seed``, ``labelled_share`` or any config key), the test sets, the
per-run extras and the report. ``tools/run_study.py`` runs it; see ``configs/studies/README.md``.
"""
import difflib
import itertools
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmbus.engine import DEADLINE_ENV
from mmbus.utils.checkpoint import find_checkpoint
from mmbus.utils.io import atomic_write, atomic_write_json
from . import diagnostics
from .configs import REPO_ROOT, SCHEDULES, derive_config, has_key, shipped_config
from .data import DataLayout, crop_stage, image_data, py, resolve_path, synthetic_crops_stage, tool
from .methods import DETECTOR, method_info, title
from .report import CONTEXT_FILE, SPEC_FILE
from .results import load_json, plain_metrics, write_row
from .stages import Parallel, Stage, StageRunner, summary_line
from .curves import convergence, read_curves
from .subsets import load_crops, write_share_datasets

#: the validation split as a test set: where each run's calibration is fitted
VAL_TEST = dict(name='val', crops=None, split='val', title='validation crops')
RUNTIME_SECTIONS = ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator',
                    'test_evaluator')


def find_values(cfg, pred, sections: Sequence[str] = RUNTIME_SECTIONS) -> Dict[str, object]:
    """Dotted key -> value of every leaf in the runtime sections for which ``pred(key, value)`` holds:
    the input of overrides such as moving a config's data to another folder."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f'{prefix}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{prefix}.{i}')
        elif pred(prefix.rsplit('.', 1)[-1], node):
            out[prefix] = node

    for sec in sections:
        if sec in cfg:
            walk(cfg[sec], sec)
    return out


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


def grid_points(grid: dict) -> List[dict]:
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(list(grid[k]) for k in keys))] or [{}]


def grid_plan(grid, methods: Sequence[str]) -> List[Tuple[dict, List[str]]]:
    """(point, methods) of a spec's ``grid``: one dict crossed into points, or a list of such dicts (the union
    of their points, e.g. three seeds at one labelled share plus a learning curve at one seed), each of which
    may name the ``methods`` its points run (default: all). A point in several entries runs the union."""
    entries = [grid] if isinstance(grid, dict) or not grid else list(grid)
    plan: Dict[str, Tuple[dict, List[str]]] = {}
    for entry in entries:
        entry = dict(entry)
        only = list(entry.pop('methods', None) or methods)
        unknown = [m for m in only if m not in methods]
        if unknown:
            raise ValueError(f'grid entry {entry}: methods {unknown} are not among the study\'s {list(methods)}')
        for point in grid_points(entry):
            key = grid_id(point)
            if key in plan:
                plan[key][1].extend(m for m in only if m not in plan[key][1])
            else:
                plan[key] = (point, only)
    for point, ms in plan.values():
        ms.sort(key=list(methods).index)
    return list(plan.values()) or [({}, list(methods))]


def grid_id(point: dict) -> str:
    short = {'labelled_share': 'share'}
    parts = []
    for k, v in point.items():
        name = short.get(k, k.split('.')[-1])
        parts.append(f'{name}{v:.2f}' if isinstance(v, float) else f'{name}{v}')
    return '_'.join(parts)


# -- the keys a spec reads (configs/studies/README.md): anything else is a misspelling, refused ---------------
#: top-level keys of a spec; names starting with ``_`` are the spec file's helper variables, not keys
SPEC_KEYS = ('name', 'work_dir', 'schedule', 'data', 'detector', 'detectors', 'crops', 'train_crops', 'methods',
             'grid', 'test_sets', 'extras', 'export_teacher', 'calibrate', 'export_bundle', 'report', 'toy')
_CONVERTED = ('root', 'seed', 'ratios', 'balanced', 'where', 'where_not')
#: ``data`` keys per ``data.type``
DATA_KEYS = {
    'synthetic_hospitals': ('type', 'images', 'difficulty') + _CONVERTED,
    'dataset': ('type', 'format', 'external_root', 'external_format', 'external_where', 'external_title')
    + _CONVERTED,
    'coco': ('type', 'root', 'title', 'seed'),
    'synthetic_crops': ('type', 'counts', 'difficulty', 'framing', 'gain', 'balanced_basic'),
    'crops': ('type', 'root'),
}
#: data types whose folders are the user's: a toy run reads them as they are (see :func:`with_toy_data`)
USER_DATA = {'dataset': ('root', 'external_root'), 'coco': ('root', ), 'crops': ('root', )}
TOY_KEYS = ('data', 'detector', 'detectors', 'classifier', 'methods', 'grid')
#: grid keys besides the dotted keys of the methods' configs (``methods``: an entry's methods)
GRID_KEYS = ('seed', 'labelled_share', 'methods')


def _refuse(what: str, key: str, known, context: str = '') -> None:
    near = difflib.get_close_matches(key, list(known), n=3)
    hint = f"; did you mean {', '.join(repr(k) for k in near)}?" if near else ''
    raise ValueError(f"unknown {what} {key!r}{context}{hint} (known: {', '.join(sorted(known))})")


def check_spec_keys(spec) -> None:
    """Refuse a top-level, ``data``, ``toy`` or ``toy.data`` key the engine does not read, naming the
    nearest known ones: a misspelled key must not run a study that ignores it."""
    for k in spec.keys():
        if not k.startswith('_') and k not in SPEC_KEYS:
            _refuse('spec key', k, SPEC_KEYS)
    data = spec.get('data')
    if not isinstance(data, dict) or 'type' not in data:
        raise ValueError(f"data.type is required (one of {', '.join(DATA_KEYS)})")
    if data['type'] not in DATA_KEYS:
        _refuse('data.type', data['type'], DATA_KEYS)
    known = DATA_KEYS[data['type']]
    for k in data:
        if not k.startswith('_') and k not in known:
            _refuse('data key', k, known, f" for data.type={data['type']!r}")
    toy = spec.get('toy') or {}
    for k in toy:
        if not k.startswith('_') and k not in TOY_KEYS:
            _refuse('toy key', k, TOY_KEYS)
    report = spec.get('report') or {}
    if report.get('targets'):
        from .targets import TARGET_KEYS
        known = TARGET_KEYS.get(report.get('type', 'paper'), ())
        for k in report['targets']:
            if k not in known:
                _refuse('report.targets key', k, known, f" for report.type={report.get('type', 'paper')!r}")
    every = sorted({k for keys in DATA_KEYS.values() for k in keys})
    for k in toy.get('data') or {}:
        if not k.startswith('_') and k not in every:
            _refuse('toy.data key', k, every)


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


def _leaf_keys(node, prefix: str = '') -> List[str]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _leaf_keys(v, f'{prefix}{k}.')]
    if isinstance(node, (list, tuple)):
        return [x for i, v in enumerate(node) for x in _leaf_keys(v, f'{prefix}{i}.')]
    return [prefix[:-1]]


def check_grid_keys(grid, methods: Dict[str, dict], schedule: str, where: str = 'grid') -> None:
    """Refuse a grid key that is neither ``seed``, ``labelled_share`` (``methods`` in an entry) nor a
    dotted key of the shipped config of every method its entry runs (or one of that method's overrides)."""
    from mmengine.config import Config
    if not grid:
        return
    entries = [grid] if isinstance(grid, dict) else list(grid)
    cfgs: Dict[str, object] = {}
    for entry in entries:
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
                    known.update(_leaf_keys(cfgs[m].to_dict()))
            if lacking:
                near = difflib.get_close_matches(key, sorted(known), n=3)
                hint = f"; did you mean {', '.join(repr(k) for k in near)}?" if near else ''
                raise ValueError(f'unknown {where} key {key!r}{hint} (a grid key is seed, labelled_share or a '
                                 f"dotted key of the methods' configs; not in the config of {', '.join(lacking)})")


class Study:
    """Stages of one study spec (an mmengine Config); :meth:`run` runs them."""

    def __init__(self, spec, work_dir: Optional[str] = None, force: Sequence[str] = (), jobs: int = 1,
                 device: str = 'cpu', keep_going: bool = False):
        self.spec, self.force, self.jobs, self.device = spec, list(force), jobs, device
        self.keep_going = keep_going
        # operating points and calibration fitted on each run's validation predictions (the clinician's view)
        self.calibrate = bool(spec.get('calibrate', True))
        self.schedule = spec.get('schedule', 'cpu-quick')
        if self.schedule not in SCHEDULES:
            raise ValueError(f'unknown schedule {self.schedule!r}; choose from {sorted(SCHEDULES)}')
        self.toy = spec.get('toy', {}) if self.schedule == 'toy' else {}
        check_spec_keys(spec)
        self.data = with_toy_data(spec['data'], self.toy.get('data'))
        self.name = spec.get('name', 'study')
        self.work_dir = osp.abspath(work_dir or spec.get('work_dir') or osp.join('work_dirs', self.name))
        self.methods = {m: dict(o or {}) for m, o in _as_method_dict(spec['methods']).items()}
        for m in self.methods:
            method_info(m)
        # a toy run may cut the grid too (the same code paths over fewer points)
        check_grid_keys(spec.get('grid'), self.methods, self.schedule)
        if 'grid' in self.toy:
            check_grid_keys(self.toy['grid'], self.methods, self.schedule, where='toy.grid')
        self.plan = grid_plan(self.toy.get('grid', spec.get('grid', {})), list(self.methods))
        self.grid = [point for point, _ in self.plan]
        self.multi = len(self.grid) > 1
        self.cfg_dir = self.p('configs')
        self.layout = DataLayout()
        self.runs: List[dict] = []

    def p(self, *parts) -> str:
        return osp.join(self.work_dir, *parts)

    def rel(self, path: str) -> str:
        return osp.relpath(path, self.work_dir)

    # -- detectors ------------------------------------------------------------------------------
    # ``detector`` is the study's main detector (work dir ``detector/``, rows ``detector_<test set>``);
    # ``detectors`` adds named ones (``det-<name>/``, rows ``det-<name>_<test set>``), e.g. an upper bound
    # on more boxes or a semi-supervised detector initialised from the main one (``init='detector'``).
    def detector_specs(self) -> Dict[str, dict]:
        out = {}
        if self.spec.get('detector'):
            out['detector'] = dict(self.spec['detector'])
        for name, d in (self.spec.get('detectors') or {}).items():
            init = d.get('init')
            if init is not None and init not in out:
                raise ValueError(f"detectors.{name}.init={init!r}: no such detector before it "
                                 f"(choose from {sorted(out)})")
            out[name] = dict(d)
        return out

    @staticmethod
    def det_key(name: str) -> str:
        """File-name stem of a detector: ``detector`` for the main one, ``det-<name>`` for the others."""
        return 'detector' if name == 'detector' else f'det-{name}'

    def detector_config(self, test_set: str = 'internal', name: str = 'detector') -> str:
        det = self.detector_specs()[name]
        src = shipped_config(det.get('config', DETECTOR['config']), self.schedule)
        from mmengine.config import Config
        base = Config.fromfile(src)
        s = self.layout.sets['internal']
        ov = rebase_overrides(base, s.images, None if s.ann_root == s.images else s.ann_root)
        ov['randomness.seed'] = self.data.get('seed', 0)
        if det.get('init'):
            ov['load_from'] = self.det_ckpt(det['init'])
        ov.update(det.get('overrides', {}))
        ov.update(self.toy.get('detector', {}) if name == 'detector' else self.toy.get('detectors', {}).get(name, {}))
        if test_set != 'internal':
            e = self.layout.sets[test_set]
            ov['test_dataloader.dataset.data_root'] = e.images.rstrip('/') + '/'
            ov['test_dataloader.dataset.ann_file'] = e.ann('test')
            for k in find_values(base, lambda k, v: k == 'ann_file', ['test_evaluator']):
                ov[k] = e.ann('test')
        stem = self.det_key(name)
        out = osp.join(self.cfg_dir, f'{stem}.py' if test_set == 'internal' else f'{stem}_{test_set}.py')
        derive_config(src, ov, out)
        return out

    def det_ckpt(self, name: str = 'detector') -> str:
        """The detector's checkpoint chosen on validation (its best one), else its last."""
        return find_checkpoint(self.p(self.det_key(name)), prefer_best=True)

    def detector_stages(self, name: str = 'detector') -> List[Stage]:
        det = self.detector_specs()[name]
        stem = self.det_key(name)
        train, test = tool('tools/train.py'), tool('tools/test.py')
        wd = self.p(stem)
        cfg_file = self.p('configs', f'{stem}.py')

        def train_cmd():
            cfg = self.detector_config(name=name)
            gpus = int(det.get('gpus') or 0)
            if not gpus:
                return py(train, cfg, '--work-dir', wd)
            # torchrun through the user's own script: nccl on GPUs, gloo on CPU (see tools/train.py)
            return ['env', f'PYTHON={sys.executable}', f"PORT={det.get('port', 29500)}", 'bash',
                    tool('tools/dist_train.sh'), cfg, gpus, '--work-dir', wd]

        ann = self.layout.sets['internal'].ann
        splits = det.get('train_splits', ['basic_train'])
        st = [Stage(f'train_{stem}', train_cmd,
                    inputs=lambda: [cfg_file] + [ann(x) for x in list(splits) + ['val', 'test']] + (
                        [self.det_ckpt(det['init'])] if det.get('init') else []),
                    outputs=[osp.join(wd, 'last_checkpoint')], work_dir=wd,
                    env=self._deadline_env(det.get('budget_share')),
                    desc=det.get('title', 'stage 1: Faster R-CNN VGG16 on basic-train boxes'))]
        for ts in self.layout.sets:
            base = self.p('eval', f'{stem}_{ts}')
            cfg = (lambda ts=ts: self.detector_config(ts, name))
            st.append(Stage(
                f'test_{stem}_{ts}',
                lambda cfg=cfg, base=base: py(test, cfg(), self.det_ckpt(name), '--work-dir', base, '--out',
                                              base + '/predictions.pkl', '--out-metrics', base + '/metrics.json'),
                inputs=lambda ts=ts: [self.p('configs', f'{stem}.py' if ts == 'internal' else f'{stem}_{ts}.py'),
                                      self.det_ckpt(name)],
                outputs=[base + '/predictions.pkl', base + '/metrics.json'],
                desc=f'box IoU / COCO mAP, {self.layout.sets[ts].title.lower()}'))
            st.append(Stage(f'row_{stem}_{ts}',
                            func=lambda ts=ts, base=base: self.write_detector_row(ts, base, name),
                            inputs=[base + '/metrics.json'], outputs=[self.p('rows', f'{stem}_{ts}.json')],
                            desc='result row'))
        return st

    @staticmethod
    def _deadline_env(share: Optional[float]):
        """A stage environment that ends training at ``share`` of the time left before ``$MMBUS_STOP_AT``,
        counted from the moment the stage starts (a detector another one starts from needs to finish first)."""
        if share is None:
            return None

        def env():
            stop_at = os.environ.get(DEADLINE_ENV)
            if not stop_at:
                return {}
            try:
                stop_at = float(stop_at)
            except ValueError:
                raise ValueError(f'{DEADLINE_ENV}: expected a Unix time in seconds, got {stop_at!r}') from None
            now = time.time()
            return {DEADLINE_ENV: f'{now + float(share) * max(0.0, stop_at - now):.0f}'}
        return env

    def write_detector_row(self, test_set: str, base: str, name: str = 'detector') -> None:
        write_row(self.work_dir, f'{self.det_key(name)}_{test_set}',
                  dict(kind='detector', method=name, test_set=test_set, grid={},
                       metrics=load_json(base + '/metrics.json'), predictions=self.rel(base + '/predictions.pkl'),
                       checkpoint=self.rel(self.det_ckpt(name)),
                       train_s=self.runner_state(f'train_{self.det_key(name)}').get('wall_s')))

    # -- stage 2 -----------------------------------------------------------------------------------
    def crop_root(self, crop_set: str, point: dict) -> str:
        if self.data['type'] == 'synthetic_crops':
            return self.p('data', f"seed{point.get('seed', 0)}")
        if self.data['type'] == 'crops':
            return resolve_path(self.data['root'], self.work_dir)
        return self.p('crops', crop_set)

    def classifier_config(self, run: dict, test: Optional[dict] = None) -> str:
        from mmengine.config import Config
        m, point = run['method'], run['grid']
        src = shipped_config(self.methods[m].get('config', method_info(m)['config']), self.schedule)
        base = Config.fromfile(src)
        ov = rebase_overrides(base, self.crop_root(self.spec.get('train_crops', 'main'), point))
        if 'labelled_share' in point:
            sub = self.p('subsets', run['gid'] or 'all')
            for k, v in find_values(base, lambda k, v: k == 'ann_file', ['train_dataloader']).items():
                if v == 'basic_train.json':
                    ov[k] = osp.join(sub, 'labelled.json')
                elif v == 'extended_train.json':
                    ov[k] = osp.join(sub, 'unlabelled.json')
        # a grid seed seeds its runs; without one, the study's seed (data.seed) does
        ov['randomness.seed'] = point.get('seed', self.data.get('seed', 0))
        ov.update(self.methods[m].get('overrides', {}))
        ov.update({k: v for k, v in point.items() if k not in ('seed', 'labelled_share')})
        # toy settings change what a method's config has (rampup_iters exists only in the mean teacher)
        ov.update({k: v for k, v in self.toy.get('classifier', {}).items() if has_key(base, k)})
        ov.update(self.toy.get('methods', {}).get(m, {}))
        name = f"{run['id']}"
        if test is not None:
            root = self.crop_root(test['crops'], point)
            ov['test_dataloader.dataset.data_root'] = root + '/'
            ov['test_dataloader.dataset.ann_file'] = f"{test['split']}.json"
            missed = osp.join(root, f"{test['split']}_missed.json")
            calibration = self.calibration_file(run) if test['name'] != VAL_TEST['name'] else None
            for i in metric_index(base, 'test_evaluator', 'BinaryDiagnosticMetric'):
                ov[f'test_evaluator.{i}.missed'] = missed if osp.isfile(missed) else None
                if calibration:
                    ov[f'test_evaluator.{i}.calibration'] = calibration
            name += f"_test_{test['name']}"
        out = osp.join(self.cfg_dir, f'{name}.py')
        derive_config(src, ov, out)
        return out

    def test_sets(self) -> List[dict]:
        sets = [dict(t) for t in self.spec.get('test_sets', [dict(name='internal', crops='main', split='test')])]
        return [t for t in sets if t.get('needs', 'internal') in self.layout.sets
                or self.data['type'] in ('synthetic_crops', 'crops')]

    def run_chain(self, run: dict, tests: Optional[List[dict]] = None, train: bool = True) -> List[Stage]:
        """Stages of one stage-2 run: training (``train``), then its test on each of ``tests`` (default: all
        the study's test sets) and their result rows; a chain of tests only (``train=False``) runs once a
        later crop set (detector boxes) exists."""
        test = tool('tools/test.py')
        tests = self.test_sets() if tests is None else tests
        wd = run['dir']
        point = run['grid']
        chain = []
        if train:
            crops = self.crop_root(self.spec.get('train_crops', 'main'), point)
            train_inputs = [osp.join(crops, f'{s}.json') for s in ('basic_train', 'extended_train', 'val')]
            if 'labelled_share' in point:
                train_inputs.append(self.p('subsets', run['gid'] or 'all', 'labelled.json'))
            chain.append(Stage(
                f"train_{run['id']}", lambda: py(tool('tools/train.py'), self.classifier_config(run), '--work-dir', wd),
                inputs=lambda: [self.p('configs', f"{run['id']}.py")] + train_inputs,
                outputs=[osp.join(wd, 'last_checkpoint')], work_dir=wd,
                desc=f"stage 2: {title(run['method'])}" + (f" ({run['gid']})" if run['gid'] else '')))
        if train and self.calibrate:
            chain += self.calibration_stages(run)
        for t in tests:
            base = osp.join(wd, f"test_{t['name']}")
            root = self.crop_root(t['crops'], point)
            chain.append(Stage(
                f"test_{run['id']}_{t['name']}",
                lambda t=t, base=base: py(test, self.classifier_config(run, t),
                                          find_checkpoint(wd, prefer_best=True), '--work-dir', base, '--out',
                                          base + '/predictions.pkl', '--out-metrics', base + '/metrics.json'),
                inputs=lambda t=t, root=root: [self.p('configs', f"{run['id']}_test_{t['name']}.py"),
                                               find_checkpoint(wd, prefer_best=True),
                                               osp.join(root, f"{t['split']}.json")] + (
                                                   [self.calibration_file(run)] if self.calibrate else []),
                outputs=[base + '/predictions.pkl', base + '/metrics.json'],
                desc=f"{title(run['method'])} on {t.get('title', t['name'])}"))
        if tests:
            name = f"row_{run['id']}" if train else f"row_{run['id']}_" + '_'.join(t['name'] for t in tests)
            chain.append(Stage(name, func=lambda: self.write_rows(run, tests),
                               inputs=[osp.join(wd, f"test_{t['name']}", 'metrics.json') for t in tests],
                               outputs=[self.p('rows', f"{run['id']}_{t['name']}.json") for t in tests],
                               desc='result rows'))
        return chain

    def calibration_file(self, run: dict) -> Optional[str]:
        return osp.join(run['dir'], 'calibration.json') if self.calibrate else None

    def calibration_stages(self, run: dict) -> List[Stage]:
        """The clinician's settings of a run, chosen on validation only: its predictions on the validation
        crops, then a temperature and the operating thresholds (sensitivity 0.95 / 0.90, Youden) fitted on them
        (``calibration.json``), which every test of the run then applies unchanged."""
        from mmbus.evaluation.calibration import write_calibration
        wd, point = run['dir'], run['grid']
        base = osp.join(wd, 'val_predictions')
        root = self.crop_root(VAL_TEST['crops'] or self.spec.get('train_crops', 'main'), point)
        val = dict(VAL_TEST, crops=self.spec.get('train_crops', 'main'))
        missed = osp.join(root, 'val_missed.json')
        return [
            Stage(f"val_{run['id']}",
                  lambda: py(tool('tools/test.py'), self.classifier_config(run, val),
                             find_checkpoint(wd, prefer_best=True), '--work-dir', base, '--out',
                             base + '/predictions.pkl'),
                  inputs=lambda: [self.p('configs', f"{run['id']}_test_val.py"), find_checkpoint(wd, prefer_best=True),
                                  osp.join(root, 'val.json')],
                  outputs=[base + '/predictions.pkl'], desc='validation predictions (for the calibration)'),
            Stage(f"calibrate_{run['id']}",
                  # misses scored by the rule the run's tests use, so the thresholds fit what they are applied to
                  func=lambda: print(write_calibration(base + '/predictions.pkl', self.calibration_file(run),
                                                       missed if osp.isfile(missed) else None,
                                                       missed_rule=self.missed_rule(run, val))),
                  inputs=[base + '/predictions.pkl'], outputs=[self.calibration_file(run)],
                  desc='temperature and operating thresholds on validation')]

    def write_rows(self, run: dict, tests: Optional[List[dict]] = None) -> None:
        wd, point = run['dir'], run['grid']
        train_s = self.runner_state(f"train_{run['id']}").get('wall_s')
        monitor, raw, skip = self.monitors(run)
        for t in (self.test_sets() if tests is None else tests):
            base = osp.join(wd, f"test_{t['name']}")
            root = self.crop_root(t['crops'], point)
            row = dict(kind='classifier', method=run['method'], grid=point, gid=run['gid'], test_set=t['name'],
                       metrics=plain_metrics(load_json(osp.join(base, 'metrics.json'))),
                       predictions=self.rel(osp.join(base, 'predictions.pkl')),
                       crops=self.rel(osp.join(root, f"{t['split']}.json")),
                       missed=self.rel(osp.join(root, f"{t['split']}_missed.json")),
                       missed_rule=self.missed_rule(run, t),
                       calibration=self.rel(self.calibration_file(run)) if self.calibrate else None,
                       checkpoint=self.rel(find_checkpoint(wd, prefer_best=True)), train_s=train_s,
                       # where the report reads the run's validation curves, and which of them it selected on
                       run_dir=self.rel(wd), monitors=dict(monitor=monitor, raw=raw, skip=skip))
            extras = {}
            for name in self.spec.get('extras', []):
                extras.update(diagnostics.compute(name, osp.join(base, 'predictions.pkl'), root))
            row['extras'] = extras
            row['convergence'] = self.convergence(run)
            write_row(self.work_dir, f"{run['id']}_{t['name']}", row)

    def missed_rule(self, run: dict, test: dict):
        """How the run's test metric scores a detector miss (its BinaryDiagnosticMetric's ``missed_rule``):
        the report's ROC curves and paired tests apply the same rule."""
        from mmengine.config import Config
        cfg = Config.fromfile(self.p('configs', f"{run['id']}_test_{test['name']}.py"))
        ev = cfg.test_evaluator if isinstance(cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        rules = [m.get('missed_rule', 'wrong') for m in ev if m.get('type') == 'BinaryDiagnosticMetric']
        return rules[0] if rules else 'wrong'

    def monitors(self, run: dict) -> Tuple[str, str, int]:
        """(selection metric, raw metric, leading validations to skip) of a run: ``save_best`` of its
        checkpoint hook, the metric a SmoothedMetricHook smooths into it (the same when nothing is smoothed),
        and how many first validations only carry that hook's ``partial`` placeholder."""
        from mmengine.config import Config
        cfg = Config.fromfile(self.p('configs', f"{run['id']}.py"))
        monitor = cfg.default_hooks.checkpoint.get('save_best') or ''
        raw, skip = monitor, 0
        for h in cfg.get('custom_hooks', []):
            suffix = h.get('suffix', '_smooth')
            if h.get('type') == 'SmoothedMetricHook' and monitor.endswith(suffix):
                raw = monitor[:-len(suffix)]
                skip = h.get('window', 5) - 1 if h.get('partial') is not None else 0
        return monitor, raw, skip

    def curves(self, run: dict) -> dict:
        monitor, raw, skip = self.monitors(run)
        curves = read_curves(run['dir'])
        if skip and monitor in curves:  # placeholders, not measurements
            curves[monitor] = curves[monitor][skip:]
        return dict(curves=curves, monitor=monitor, raw=raw)

    def convergence(self, run: dict) -> dict:
        c = self.curves(run)
        return convergence(c['curves'], c['monitor'])

    def runner_state(self, name: str) -> dict:
        return self._runner.state.get(name) if getattr(self, '_runner', None) else {}

    def grid_stages(self, point: dict, gid: str) -> List[Stage]:
        st = []
        if self.data['type'] == 'synthetic_crops':
            st.append(synthetic_crops_stage(self.data, point.get('seed', 0), self.crop_root('main', point)))
        if 'labelled_share' in point:
            pool = self.crop_root(self.spec.get('train_crops', 'main'), point)
            out = self.p('subsets', gid)
            files = [osp.join(pool, f'{s}.json') for s in ('basic_train', 'extended_train')]

            def make(share=point['labelled_share'], seed=point.get('seed', 0)):
                records = load_crops(files[0]) + load_crops(files[1])
                print(write_share_datasets(records, share, out, seed))

            st.append(Stage(f'subset_{gid}', func=make, inputs=files,
                            outputs=[osp.join(out, 'labelled.json'), osp.join(out, 'unlabelled.json')],
                            desc=f"labelled share {point['labelled_share']:.0%}"))
        return st

    def export_stage(self) -> Stage:
        exp = tool('tools/export_teacher.py')
        run = next(r for r in self.runs if r['method'] == 'mean_teacher')
        out = self.p('export')
        return Stage('export_teacher',
                     lambda: py(exp, self.p('configs', f"{run['id']}.py"),
                                find_checkpoint(run['dir'], prefer_best=True), '--out-dir', out),
                     inputs=lambda: [self.p('configs', f"{run['id']}.py"),
                                     find_checkpoint(run['dir'], prefer_best=True)],
                     outputs=[osp.join(out, 'teacher.pth'), osp.join(out, 'teacher_config.py')],
                     desc='mean teacher -> plain mmpretrain ImageClassifier')

    def bundle_stages(self) -> List[Stage]:
        """The mean teacher (of the first grid point) as the portable bundle: ONNX recogniser checked against
        PyTorch, its calibration from validation, and a model card with the study's data counts and its test
        figures on the first test set."""
        run = next(r for r in self.runs if r['method'] == 'mean_teacher')
        t = self.test_sets()[0]
        out, info = self.p('bundle'), self.p('bundle_card_info.json')
        metrics = osp.join(run['dir'], f"test_{t['name']}", 'metrics.json')

        def card_info():
            crops = self.crop_root(self.spec.get('train_crops', 'main'), run['grid'])
            sub = self.p('subsets', run['gid'] or 'all')
            if 'labelled_share' in run['grid']:
                lab, unl = (osp.join(sub, f'{x}.json') for x in ('labelled', 'unlabelled'))
            else:
                lab, unl = (osp.join(crops, f'{x}.json') for x in ('basic_train', 'extended_train'))
            n = {k: len((load_json(f) or {}).get('data_list', [])) for k, f in (('lab', lab), ('unl', unl))}
            split = ', '.join(f"{s} {len((load_json(osp.join(crops, f'{s}.json')) or {}).get('data_list', []))}"
                              for s in ('val', 'test'))
            card = dict(name=f'mmbus mean teacher ({self.name})',
                        training_data=f"nodule crops of study {self.name} ({self.spec.get('train_crops', 'main')} "
                                      'boxes)',
                        num_labelled=n['lab'], num_unlabelled=n['unl'],
                        split=f'patient-grouped; crops: {split}; calibration fitted on the validation crops',
                        test_data=t.get('title', t['name']))
            # the spec's own words on the data (``export_bundle=dict(card=dict(training_data=...))``) come first
            opts = self.spec.get('export_bundle')
            card.update(dict(opts.get('card', {})) if isinstance(opts, dict) else {})
            atomic_write_json(card, info, indent=1)

        return [Stage('bundle_card_info', func=card_info, inputs=[metrics], outputs=[info],
                      desc='model card facts from the study'),
                Stage('export_bundle',
                      lambda: py(tool('tools/export_bundle.py'), self.p('configs', f"{run['id']}.py"),
                                 find_checkpoint(run['dir'], prefer_best=True), '--out-dir', out, '--calibration',
                                 self.calibration_file(run), '--metrics', metrics, '--card-info', info),
                      inputs=lambda: [self.p('configs', f"{run['id']}.py"),
                                      find_checkpoint(run['dir'], prefer_best=True), self.calibration_file(run),
                                      metrics, info],
                      outputs=[osp.join(out, 'recogniser.onnx'), osp.join(out, 'MODEL_CARD.md')],
                      desc='mean teacher -> ONNX bundle with calibration and model card')]

    # -- assembling ----------------------------------------------------------------------------------
    def build(self) -> list:
        """The study's stages in order. Where stage 2 trains on ground-truth crops, the detectors and the
        stage-2 runs are independent chains run side by side (``jobs`` at a time), and the tests on
        detector crops (the two stages together) follow once the detectors are done; where stage 2 trains
        on detector crops, the detectors come first."""
        items: list = []
        det_crops: set = set()
        crop_stages: Dict[str, Stage] = {}
        dets = {}
        if self.data['type'] in ('synthetic_hospitals', 'dataset', 'coco'):
            self.layout = image_data(self.data, self.work_dir)
            items += self.layout.stages
            dets = self.detector_specs()
            for name, crops in self.spec.get('crops', {}).items():
                if crops.get('boxes') == 'detector':
                    which = crops.get('detector', 'detector')
                    if which not in dets:
                        raise ValueError(f"crop set {name!r} takes the boxes of detector {which!r}, which the "
                                         f"study does not have (detectors: {sorted(dets) or 'none'})")
                    det_crops.add(name)
                    cfg_stem = self.det_key(which)
                    crop_stages[name] = crop_stage(
                        name, crops, self.layout, self.p('crops', name),
                        det_cfg=lambda s=cfg_stem: self.p('configs', f'{s}.py'),
                        det_ckpt=lambda w=which: self.det_ckpt(w), device=self.device)
                else:
                    crop_stages[name] = crop_stage(name, crops, self.layout, self.p('crops', name))
        elif self.data['type'] == 'crops':
            root = resolve_path(self.data.get('root', ''), self.work_dir)
            missing = [s for s in ('basic_train', 'extended_train', 'val', 'test')
                       if not osp.isfile(osp.join(root, f'{s}.json'))]
            if missing:
                raise FileNotFoundError(f"data.type='crops': {root} lacks {', '.join(m + '.json' for m in missing)} "
                                        '(a tools/extract_crops.py output folder is expected)')
        elif self.data['type'] != 'synthetic_crops':
            raise ValueError(f"unknown data.type {self.data['type']!r}")
        # a detector started from another one trains after it, in the same chain
        det_chains: Dict[str, List[Stage]] = {}
        for name, d in dets.items():
            root = d.get('init')
            while root and dets[root].get('init'):
                root = dets[root]['init']
            det_chains.setdefault(root or name, []).extend(self.detector_stages(name))
        early = [t for t in self.test_sets() if t['crops'] not in det_crops]
        late = [t for t in self.test_sets() if t['crops'] in det_crops]
        concurrent = self.spec.get('train_crops', 'main') not in det_crops
        chains = Parallel()
        if concurrent:
            items += [st for n, st in crop_stages.items() if n not in det_crops]
            chains.extend(det_chains.values())
        else:
            for chain in det_chains.values():
                items += chain
            items += list(crop_stages.values())
        for point, point_methods in self.plan:
            gid = grid_id(point) if self.multi else ''
            items += self.grid_stages(point, gid or 'all')
            for m in point_methods:
                rid = f'{gid}_{m}' if gid else m
                run = dict(id=rid, gid=gid, method=m, grid=point, dir=self.p('runs', gid, m))
                self.runs.append(run)
                chains.append(self.run_chain(run, early if concurrent else None))
        items.append(chains)
        if concurrent and det_crops:
            items += [crop_stages[n] for n in crop_stages if n in det_crops]
            if late:
                items.append(Parallel(self.run_chain(run, late, train=False) for run in self.runs))
        if self.spec.get('export_teacher') and any(r['method'] == 'mean_teacher' for r in self.runs):
            items.append(self.export_stage())
        if self.spec.get('export_bundle') and self.calibrate and any(r['method'] == 'mean_teacher'
                                                                     for r in self.runs):
            items += self.bundle_stages()
        items.append(Stage('report', func=self.report,
                           # the study's code and spec too: a report is cheap to redraw when they change
                           inputs=lambda: [osp.join(self.work_dir, 'rows'), osp.dirname(__file__),
                                           self.p(SPEC_FILE)],
                           outputs=[self.p('report', 'report.md'), self.p('report', 'report.json')],
                           desc='report (Markdown, JSON, PNG)'))
        return items

    def report_context(self) -> dict:
        """What a report needs besides the rows and the files they name, as the built stages know it
        (``report_context.json``): the study's name, schedule, data, methods in order, test sets, image sets
        (after :meth:`build`), report settings and where the study ran (its commands name that folder)."""
        return dict(name=self.name, schedule=self.schedule, work_dir=self.work_dir, data=self.data,
                    methods=list(self.methods), test_sets=self.test_sets(),
                    sets={n: dict(images=s.images, ann_root=s.ann_root, title=s.title)
                          for n, s in self.layout.sets.items()},
                    train_crops=self.spec.get('train_crops', 'main'),
                    export_teacher=bool(self.spec.get('export_teacher')), report=self.spec.get('report', {}))

    def report(self) -> dict:
        """The report stage: the context written by the study that draws the report (a later invocation that
        stops before its report leaves it alone), then the report from the work dir alone."""
        from .report import make_report
        atomic_write_json(self.report_context(), self.p(CONTEXT_FILE), indent=1, default=str)
        return make_report(self.work_dir)

    def run(self) -> dict:
        os.makedirs(self.work_dir, exist_ok=True)
        items = self.build()
        env = dict(os.environ)
        if self.jobs > 1 and 'OMP_NUM_THREADS' not in env:
            env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 2) // self.jobs))
        self._runner = StageRunner(self.work_dir, self.force, self.jobs, cwd=REPO_ROOT, env=env,
                                   keep_going=self.keep_going)
        atomic_write(self.p(SPEC_FILE), self.spec.dump)
        print(f'[study] {self.name}: work dir {self.work_dir}; schedule {self.schedule}; '
              f'{len(self.runs)} stage-2 run(s)', flush=True)
        t0 = time.time()
        try:
            self._runner.run(items)
        finally:
            print(summary_line(self._runner.records, self._runner.total, time.time() - t0), flush=True)
        return dict(records=self._runner.records, wall_s=time.time() - t0,
                    report=self.p('report', 'report.md'))


def _as_method_dict(methods) -> Dict[str, dict]:
    if isinstance(methods, (list, tuple)):
        return {m: {} for m in methods}
    return dict(methods)
