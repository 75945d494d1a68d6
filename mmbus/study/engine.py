"""The study engine: a study spec (``configs/studies/*.py``) -> stages -> result rows -> report.

A spec names the data, the detector (optional), the crop sets, the stage-2 methods (shipped configs plus
dotted-key overrides), a grid (``seed``, ``labelled_share`` or any config key), the test sets, the
per-run extras and the report. ``tools/run_study.py`` runs it; see ``configs/studies/README.md``.
"""
import itertools
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmbus.utils.io import atomic_write
from . import diagnostics
from .checkpoints import find_checkpoint
from .configs import REPO_ROOT, SCHEDULES, derive_config, has_key, shipped_config
from .data import DataLayout, crop_stage, image_data, py, resolve_path, synthetic_crops_stage, tool
from .methods import DETECTOR, method_info, title
from .results import load_json, load_predictions, plain_metrics, write_row
from .stages import Parallel, Stage, StageRunner, summary_line
from .curves import convergence, read_curves
from .subsets import load_crops, write_share_datasets

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


class Study:
    """Stages of one study spec (an mmengine Config); :meth:`run` runs them."""

    def __init__(self, spec, work_dir: Optional[str] = None, force: Sequence[str] = (), jobs: int = 1,
                 device: str = 'cpu'):
        self.spec, self.force, self.jobs, self.device = spec, list(force), jobs, device
        self.schedule = spec.get('schedule', 'cpu-quick')
        if self.schedule not in SCHEDULES:
            raise ValueError(f'unknown schedule {self.schedule!r}; choose from {sorted(SCHEDULES)}')
        self.toy = spec.get('toy', {}) if self.schedule == 'toy' else {}
        self.data = dict(spec['data'])
        self.data.update(self.toy.get('data', {}))
        self.name = spec.get('name', 'study')
        self.work_dir = osp.abspath(work_dir or spec.get('work_dir') or osp.join('work_dirs', self.name))
        self.methods = {m: dict(o or {}) for m, o in _as_method_dict(spec['methods']).items()}
        for m in self.methods:
            method_info(m)
        self.plan = grid_plan(spec.get('grid', {}), list(self.methods))
        self.grid = [point for point, _ in self.plan]
        self.multi = len(self.grid) > 1
        self.cfg_dir = self.p('configs')
        self.layout = DataLayout()
        self.runs: List[dict] = []
        self._predictions: Dict[tuple, tuple] = {}

    def p(self, *parts) -> str:
        return osp.join(self.work_dir, *parts)

    def rel(self, path: str) -> str:
        return osp.relpath(path, self.work_dir)

    def predictions(self, row: dict):
        """(scores, labels, image ids) of a result row's test, misses included; read once per study
        (tables, ROC curves and paired tests all use them)."""
        key = (row['predictions'], row['crops'], row['missed'])
        if key not in self._predictions:
            self._predictions[key] = load_predictions(*(self.p(k) for k in key))
        return self._predictions[key]

    # -- detector -------------------------------------------------------------------------------
    def detector_config(self, test_set: str = 'internal') -> str:
        det = self.spec['detector']
        src = shipped_config(det.get('config', DETECTOR['config']), self.schedule)
        from mmengine.config import Config
        base = Config.fromfile(src)
        s = self.layout.sets['internal']
        ov = rebase_overrides(base, s.images, None if s.ann_root == s.images else s.ann_root)
        ov['randomness.seed'] = self.data.get('seed', 0)
        ov.update(det.get('overrides', {}))
        ov.update(self.toy.get('detector', {}))
        if test_set != 'internal':
            e = self.layout.sets[test_set]
            ov['test_dataloader.dataset.data_root'] = e.images.rstrip('/') + '/'
            ov['test_dataloader.dataset.ann_file'] = e.ann('test')
            for k in find_values(base, lambda k, v: k == 'ann_file', ['test_evaluator']):
                ov[k] = e.ann('test')
        name = 'detector' if test_set == 'internal' else f'detector_{test_set}'
        out = osp.join(self.cfg_dir, f'{name}.py')
        derive_config(src, ov, out)
        return out

    def det_ckpt(self) -> str:
        return find_checkpoint(self.p('detector'))

    def detector_stages(self) -> List[Stage]:
        train, test = tool('tools/train.py'), tool('tools/test.py')
        wd = self.p('detector')
        st = [Stage('train_detector', lambda: py(train, self.detector_config(), '--work-dir', wd),
                    inputs=lambda: [self.p('configs', 'detector.py')] + [
                        self.layout.sets['internal'].ann(x) for x in ('basic_train', 'val', 'test')],
                    outputs=[osp.join(wd, 'last_checkpoint')], work_dir=wd,
                    desc='stage 1: Faster R-CNN VGG16 on basic-train boxes')]
        for ts in self.layout.sets:
            base = self.p('eval', f'detector_{ts}')
            cfg = (lambda ts=ts: self.detector_config(ts))
            st.append(Stage(
                f'test_detector_{ts}',
                lambda cfg=cfg, base=base: py(test, cfg(), self.det_ckpt(), '--work-dir', base, '--out',
                                              base + '/predictions.pkl', '--out-metrics', base + '/metrics.json'),
                inputs=lambda ts=ts: [self.p('configs', 'detector.py' if ts == 'internal' else
                                             f'detector_{ts}.py'), self.det_ckpt()],
                outputs=[base + '/predictions.pkl', base + '/metrics.json'],
                desc=f'box IoU / COCO mAP, {self.layout.sets[ts].title.lower()}'))
            st.append(Stage(f'row_detector_{ts}', func=lambda ts=ts, base=base: self.write_detector_row(ts, base),
                            inputs=[base + '/metrics.json'], outputs=[self.p('rows', f'detector_{ts}.json')],
                            desc='result row'))
        return st

    def write_detector_row(self, test_set: str, base: str) -> None:
        write_row(self.work_dir, f'detector_{test_set}',
                  dict(kind='detector', method='detector', test_set=test_set, grid={},
                       metrics=load_json(base + '/metrics.json'), predictions=self.rel(base + '/predictions.pkl')))

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
        ov['randomness.seed'] = point.get('seed', 0)
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
            for i in metric_index(base, 'test_evaluator', 'BinaryDiagnosticMetric'):
                ov[f'test_evaluator.{i}.missed'] = missed if osp.isfile(missed) else None
            name += f"_test_{test['name']}"
        out = osp.join(self.cfg_dir, f'{name}.py')
        derive_config(src, ov, out)
        return out

    def test_sets(self) -> List[dict]:
        sets = [dict(t) for t in self.spec.get('test_sets', [dict(name='internal', crops='main', split='test')])]
        return [t for t in sets if t.get('needs', 'internal') in self.layout.sets
                or self.data['type'] in ('synthetic_crops', 'crops')]

    def run_chain(self, run: dict) -> List[Stage]:
        train, test = tool('tools/train.py'), tool('tools/test.py')
        wd = run['dir']
        point = run['grid']
        crops = self.crop_root(self.spec.get('train_crops', 'main'), point)
        train_inputs = [osp.join(crops, f'{s}.json') for s in ('basic_train', 'extended_train', 'val')]
        if 'labelled_share' in point:
            train_inputs.append(self.p('subsets', run['gid'] or 'all', 'labelled.json'))
        chain = [Stage(f"train_{run['id']}", lambda: py(train, self.classifier_config(run), '--work-dir', wd),
                       inputs=lambda: [self.p('configs', f"{run['id']}.py")] + train_inputs,
                       outputs=[osp.join(wd, 'last_checkpoint')], work_dir=wd,
                       desc=f"stage 2: {title(run['method'])}" + (f" ({run['gid']})" if run['gid'] else ''))]
        for t in self.test_sets():
            base = osp.join(wd, f"test_{t['name']}")
            root = self.crop_root(t['crops'], point)
            chain.append(Stage(
                f"test_{run['id']}_{t['name']}",
                lambda t=t, base=base: py(test, self.classifier_config(run, t),
                                          find_checkpoint(wd, prefer_best=True), '--work-dir', base, '--out',
                                          base + '/predictions.pkl', '--out-metrics', base + '/metrics.json'),
                inputs=lambda t=t, root=root: [self.p('configs', f"{run['id']}_test_{t['name']}.py"),
                                               find_checkpoint(wd, prefer_best=True),
                                               osp.join(root, f"{t['split']}.json")],
                outputs=[base + '/predictions.pkl', base + '/metrics.json'],
                desc=f"{title(run['method'])} on {t.get('title', t['name'])}"))
        chain.append(Stage(f"row_{run['id']}", func=lambda: self.write_rows(run),
                           inputs=[osp.join(wd, f"test_{t['name']}", 'metrics.json') for t in self.test_sets()],
                           outputs=[self.p('rows', f"{run['id']}_{t['name']}.json") for t in self.test_sets()],
                           desc='result rows'))
        return chain

    def write_rows(self, run: dict) -> None:
        wd, point = run['dir'], run['grid']
        train_s = self.runner_state(f"train_{run['id']}").get('wall_s')
        for t in self.test_sets():
            base = osp.join(wd, f"test_{t['name']}")
            root = self.crop_root(t['crops'], point)
            row = dict(kind='classifier', method=run['method'], grid=point, gid=run['gid'], test_set=t['name'],
                       metrics=plain_metrics(load_json(osp.join(base, 'metrics.json'))),
                       predictions=self.rel(osp.join(base, 'predictions.pkl')),
                       crops=self.rel(osp.join(root, f"{t['split']}.json")),
                       missed=self.rel(osp.join(root, f"{t['split']}_missed.json")),
                       checkpoint=self.rel(find_checkpoint(wd, prefer_best=True)), train_s=train_s)
            extras = {}
            for name in self.spec.get('extras', []):
                extras.update(diagnostics.compute(name, osp.join(base, 'predictions.pkl'), root))
            row['extras'] = extras
            row['convergence'] = self.convergence(run)
            write_row(self.work_dir, f"{run['id']}_{t['name']}", row)

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

    # -- assembling ----------------------------------------------------------------------------------
    def build(self) -> list:
        items: list = []
        if self.data['type'] in ('synthetic_hospitals', 'dataset'):
            self.layout = image_data(self.data, self.work_dir)
            items += self.layout.stages
            if self.spec.get('detector'):
                items += self.detector_stages()
            for name, crops in self.spec.get('crops', {}).items():
                if crops.get('boxes') == 'detector' and not self.spec.get('detector'):
                    raise ValueError(f"crop set {name!r} takes detector boxes, but the study has no detector")
                items.append(crop_stage(name, crops, self.layout, self.p('crops', name),
                                        det_cfg=lambda: self.p('configs', 'detector.py'), det_ckpt=self.det_ckpt,
                                        device=self.device))
        elif self.data['type'] == 'crops':
            root = resolve_path(self.data.get('root', ''), self.work_dir)
            missing = [s for s in ('basic_train', 'extended_train', 'val', 'test')
                       if not osp.isfile(osp.join(root, f'{s}.json'))]
            if missing:
                raise FileNotFoundError(f"data.type='crops': {root} lacks {', '.join(m + '.json' for m in missing)} "
                                        '(a tools/extract_crops.py output folder is expected)')
        elif self.data['type'] != 'synthetic_crops':
            raise ValueError(f"unknown data.type {self.data['type']!r}")
        chains = Parallel()
        for point, point_methods in self.plan:
            gid = grid_id(point) if self.multi else ''
            items += self.grid_stages(point, gid or 'all')
            for m in point_methods:
                rid = f'{gid}_{m}' if gid else m
                run = dict(id=rid, gid=gid, method=m, grid=point, dir=self.p('runs', gid, m))
                self.runs.append(run)
                chains.append(self.run_chain(run))
        items.append(chains)
        if self.spec.get('export_teacher') and any(r['method'] == 'mean_teacher' for r in self.runs):
            items.append(self.export_stage())
        from .report import make_report
        items.append(Stage('report', func=lambda: make_report(self),
                           # the study's code too: a report is cheap to redraw when it changes
                           inputs=lambda: [osp.join(self.work_dir, 'rows'), osp.dirname(__file__)],
                           outputs=[self.p('report', 'report.md'), self.p('report', 'report.json')],
                           desc='report (Markdown, JSON, PNG)'))
        return items

    def run(self) -> dict:
        os.makedirs(self.work_dir, exist_ok=True)
        items = self.build()
        env = dict(os.environ)
        if self.jobs > 1 and 'OMP_NUM_THREADS' not in env:
            env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 2) // self.jobs))
        self._runner = StageRunner(self.work_dir, self.force, self.jobs, cwd=REPO_ROOT, env=env)
        atomic_write(self.p('study_spec.py'), self.spec.dump)
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
