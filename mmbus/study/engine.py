"""The study engine: a study spec (``configs/studies/*.py``) -> stages -> result rows -> report (drawn by
:mod:`mmbus.reporting` from the work dir alone).

A spec names the data, the detector (optional), the crop sets, the stage-2 methods (shipped configs plus
dotted-key overrides), a grid (``seed``, ``labelled_share`` or any config key), the test sets, the
per-run extras and the report. ``tools/run_study.py`` runs it; see ``configs/studies/README.md``.
What a spec may say is :mod:`.spec`, the stage-2 runs' stages :mod:`.classifiers`, and how stages run, skip
and resume :mod:`.stages`.
"""
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence

from mmbus import reporting
from mmbus.engine import DEADLINE_ENV, MIN_TRAIN_S, parse_deadline
from mmbus.reporting.context import CONTEXT_FILE, SPEC_FILE
from mmbus.reporting.methods import DETECTOR, detector_key, method_info
from mmbus.reporting.results import load_json, write_row
from mmbus.utils.io import atomic_write, atomic_write_json
from .classifiers import VAL_TEST, ClassifierStages, best
from .configs import REPO_ROOT, SCHEDULES, derive_config, shipped_config
from .data import SPLITS, DataLayout, crop_stage, image_data, py, resolve_path, synthetic_crops_stage, tool
from .spec import check_grid_keys, check_spec_keys, find_values, grid_id, grid_plan, rebase_overrides, with_toy_data
from .stages import Parallel, Stage, StageRunner, summary_line
from .subsets import load_crops, write_share_datasets


class Study(ClassifierStages):
    """Stages of one study spec (an mmengine Config); :meth:`run` runs them."""

    def __init__(self, spec, work_dir: Optional[str] = None, force: Sequence[str] = (), jobs: int = 1,
                 device: str = 'cpu', keep_going: bool = False):
        self.spec, self.force, self.jobs, self.device, self.keep_going = spec, list(force), jobs, device, keep_going
        # operating points and calibration fitted on each run's validation predictions (the clinician's view)
        self.calibrate = bool(spec.get('calibrate', True))
        if spec.get('export_bundle') and not self.calibrate:
            raise ValueError('export_bundle needs calibrate=True: the bundle carries the calibration fitted on '
                             'validation')
        self.schedule = spec.get('schedule', 'cpu-quick')
        if self.schedule not in SCHEDULES:
            raise ValueError(f'unknown schedule {self.schedule!r}; choose from {sorted(SCHEDULES)}')
        self.toy = spec.get('toy', {}) if self.schedule == 'toy' else {}
        check_spec_keys(spec)
        if any(t.get('name') == VAL_TEST['name'] for t in spec.get('test_sets') or []):
            raise ValueError(f"test_sets: the name {VAL_TEST['name']!r} is the study's own (the validation "
                             'predictions each calibration is fitted on); choose another')
        self.data = with_toy_data(spec['data'], self.toy.get('data'))
        self.name = spec.get('name', 'study')
        self.work_dir = osp.abspath(work_dir or spec.get('work_dir') or osp.join('work_dirs', self.name))
        methods = spec['methods']
        methods = dict.fromkeys(methods) if isinstance(methods, (list, tuple)) else dict(methods)
        self.methods = {m: dict(o or {}) for m, o in methods.items()}
        for m in self.methods:
            method_info(m)
        # a toy run may cut the grid too (the same code paths over fewer points)
        check_grid_keys(spec.get('grid'), self.methods, self.schedule)
        if 'grid' in self.toy:
            check_grid_keys(self.toy['grid'], self.methods, self.schedule, where='toy.grid')
        self.plan = grid_plan(self.toy.get('grid', spec.get('grid', {})), list(self.methods))
        self.multi = len(self.plan) > 1
        self.layout = DataLayout()
        self.runs: List[dict] = []  # filled by build()
        self._runner: Optional[StageRunner] = None

    def p(self, *parts) -> str:
        return osp.join(self.work_dir, *parts)

    def rel(self, path: str) -> str:
        return osp.relpath(path, self.work_dir)

    def runner_state(self, name: str) -> dict:
        return self._runner.state.get(name) if self._runner else {}

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

    def detector_config(self, test_set: str = 'internal', name: str = 'detector') -> str:
        from mmengine.config import Config
        det = self.detector_specs()[name]
        src = shipped_config(det.get('config', DETECTOR['config']), self.schedule)
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
        stem = detector_key(name)
        out = self.p('configs', f'{stem}.py' if test_set == 'internal' else f'{stem}_{test_set}.py')
        derive_config(src, ov, out)
        return out

    def det_ckpt(self, name: str = 'detector') -> str:
        """The detector's checkpoint chosen on validation (its best one), else its last."""
        return best(self.p(detector_key(name)))

    def detector_stages(self, name: str = 'detector') -> List[Stage]:
        det = self.detector_specs()[name]
        stem = detector_key(name)
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
                    outputs=[osp.join(wd, 'last_checkpoint')], work_dir=wd, env=deadline_env(det.get('budget_share')),
                    desc=det.get('title', 'stage 1: Faster R-CNN VGG16 on basic-train boxes'))]
        for ts in self.layout.sets:
            base = self.p('eval', f'{stem}_{ts}')
            st.append(Stage(
                f'test_{stem}_{ts}',
                lambda ts=ts, base=base: py(test, self.detector_config(ts, name), self.det_ckpt(name), '--work-dir',
                                            base, '--out', base + '/predictions.pkl', '--out-metrics',
                                            base + '/metrics.json'),
                inputs=lambda ts=ts: [self.p('configs', f'{stem}.py' if ts == 'internal' else f'{stem}_{ts}.py'),
                                      self.det_ckpt(name)],
                outputs=[base + '/predictions.pkl', base + '/metrics.json'],
                desc=f'box IoU / COCO mAP, {self.layout.sets[ts].title.lower()}'))
            st.append(Stage(f'row_{stem}_{ts}',
                            func=lambda ts=ts, base=base: self.write_detector_row(ts, base, name),
                            inputs=[base + '/metrics.json'], outputs=[self.p('rows', f'{stem}_{ts}.json')],
                            desc='result row'))
        return st

    def write_detector_row(self, test_set: str, base: str, name: str = 'detector') -> None:
        write_row(self.work_dir, f'{detector_key(name)}_{test_set}',
                  dict(kind='detector', method=name, test_set=test_set, grid={},
                       metrics=load_json(base + '/metrics.json'), predictions=self.rel(base + '/predictions.pkl'),
                       checkpoint=self.rel(self.det_ckpt(name)),
                       train_s=self.runner_state(f'train_{detector_key(name)}').get('wall_s')))

    # -- stage 2 and the assembly ------------------------------------------------------------------
    def crop_root(self, crop_set: str, point: dict) -> str:
        if self.data['type'] == 'synthetic_crops':
            return self.p('data', f"seed{point.get('seed', 0)}")
        if self.data['type'] == 'crops':
            return resolve_path(self.data['root'], self.work_dir)
        return self.p('crops', crop_set)

    def test_sets(self) -> List[dict]:
        sets = [dict(t) for t in self.spec.get('test_sets', [dict(name='internal', crops='main', split='test')])]
        return [t for t in sets if t.get('needs', 'internal') in self.layout.sets
                or self.data['type'] in ('synthetic_crops', 'crops')]

    def grid_stages(self, point: dict, gid: str) -> List[Stage]:
        """What a grid point needs before its runs: its generated crops, its labelled / unlabelled subsets."""
        st = []
        seed = point.get('seed', 0)
        if self.data['type'] == 'synthetic_crops' and seed not in self._crop_seeds:  # one crop set per seed
            self._crop_seeds.add(seed)
            st.append(synthetic_crops_stage(self.data, seed, self.crop_root('main', point)))
        if 'labelled_share' in point:
            pool = self.crop_root(self.train_crops, point)
            out = self.p('subsets', gid)
            files = [osp.join(pool, f'{s}.json') for s in ('basic_train', 'extended_train')]

            def make(share=point['labelled_share'], seed=point.get('seed', 0)):
                records = load_crops(files[0]) + load_crops(files[1])
                print(write_share_datasets(records, share, out, seed))

            st.append(Stage(f'subset_{gid}', func=make, inputs=files,
                            params=dict(labelled_share=point['labelled_share'], seed=point.get('seed', 0)),
                            outputs=[osp.join(out, 'labelled.json'), osp.join(out, 'unlabelled.json')],
                            desc=f"labelled share {point['labelled_share']:.0%}"))
        return st

    # -- assembling ----------------------------------------------------------------------------------
    def build(self) -> list:
        """The study's stages in order. Where stage 2 trains on ground-truth crops, the detectors and the
        stage-2 runs are independent chains run side by side (``jobs`` at a time), and the tests on
        detector crops (the two stages together) follow once the detectors are done; where stage 2 trains
        on detector crops, the detectors come first."""
        items: list = []
        self.runs, self._crop_seeds = [], set()  # build() may be called again: start from nothing
        det_crops: set = set()
        crop_stages: Dict[str, Stage] = {}
        dets = {}
        if self.data['type'] in ('synthetic_hospitals', 'dataset', 'coco'):
            self.layout = image_data(self.data, self.work_dir)
            items += self.layout.stages
            dets = self.detector_specs()
            for name, crops in self.spec.get('crops', {}).items():
                if crops.get('boxes') != 'detector':
                    crop_stages[name] = crop_stage(name, crops, self.layout, self.p('crops', name))
                    continue
                which = crops.get('detector', 'detector')
                if which not in dets:
                    raise ValueError(f"crop set {name!r} takes the boxes of detector {which!r}, which the "
                                     f"study does not have (detectors: {sorted(dets) or 'none'})")
                det_crops.add(name)
                crop_stages[name] = crop_stage(
                    name, crops, self.layout, self.p('crops', name),
                    det_cfg=lambda s=detector_key(which): self.p('configs', f'{s}.py'),
                    det_ckpt=lambda w=which: self.det_ckpt(w), device=self.device)
        if self.data['type'] in ('coco', 'crops'):  # given ready: a missing split fails now, not in a tool
            root = resolve_path(self.data.get('root', ''), self.work_dir)
            folder = osp.join(root, 'annotations') if self.data['type'] == 'coco' else root
            missing = [f'{x}.json' for x in SPLITS if not osp.isfile(osp.join(folder, f'{x}.json'))]
            if missing:
                raise FileNotFoundError(f"data.type={self.data['type']!r}: {folder} lacks {', '.join(missing)} ("
                                        + ("the converter's output" if self.data['type'] == 'coco' else
                                           'a tools/extract_crops.py output folder') + ' is expected)')
        # a detector started from another one trains after it, in the same chain
        det_chains: Dict[str, List[Stage]] = {}
        for name, d in dets.items():
            root = d.get('init')
            while root and dets[root].get('init'):
                root = dets[root]['init']
            det_chains.setdefault(root or name, []).extend(self.detector_stages(name))
        early = [t for t in self.test_sets() if t['crops'] not in det_crops]
        late = [t for t in self.test_sets() if t['crops'] in det_crops]
        concurrent = self.train_crops not in det_crops
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
                rid = self.run_id(point, m)
                run = dict(id=rid, gid=gid, method=m, grid=point, dir=self.p('runs', gid, m))
                self.runs.append(run)
                chains.append(self.run_chain(run, early if concurrent else None))
        items.append(chains)
        if concurrent and det_crops:
            items += [crop_stages[n] for n in crop_stages if n in det_crops]
            if late:
                items.append(Parallel(self.run_chain(run, late, train=False) for run in self.runs))
        teacher = any(r['method'] == 'mean_teacher' for r in self.runs)
        if self.spec.get('export_teacher') and teacher:
            items.append(self.export_stage())
        if self.spec.get('export_bundle') and teacher:
            items += self.bundle_stages()
        items.append(Stage('report', func=self.report,
                           # the code that writes its context and draws it, and the spec, too: a report is
                           # cheap to redraw when they change
                           inputs=lambda: [self.p('rows'), osp.dirname(__file__), osp.dirname(reporting.__file__),
                                           self.p(SPEC_FILE)],
                           outputs=[self.p('report', 'report.md'), self.p('report', 'report.json')],
                           desc='report (Markdown, JSON, PNG)'))
        return items

    def row_names(self) -> Dict[str, List[str]]:
        """The rows the study makes (``detectors``: one per detector on the internal test split; ``stage2``: one
        per grid point, method and test set), from the spec alone."""
        if self.data['type'] in ('synthetic_hospitals', 'dataset', 'coco'):  # its image sets decide its test sets
            self.layout = image_data(self.data, self.work_dir)
        tests = [t['name'] for t in self.test_sets()]
        return dict(detectors=[f'{detector_key(n)}_internal' for n in self.detector_specs()],
                    stage2=[f'{self.run_id(p, m)}_{t}' for p, ms in self.plan for m in ms for t in tests])

    def run_id(self, point: dict, method: str) -> str:
        """A stage-2 run's name (its stages, configs and rows ``<run id>_<test set>``)."""
        return f'{grid_id(point)}_{method}' if self.multi else method

    def report_context(self) -> dict:
        """What a report needs besides the rows and the files they name, as the built stages know it
        (``report_context.json``): the study's name, schedule, data, methods in order, test sets, image sets
        (after :meth:`build`), report settings and where the study ran (its commands name that folder)."""
        return dict(name=self.name, schedule=self.schedule, work_dir=self.work_dir, data=self.data,
                    methods=list(self.methods), test_sets=self.test_sets(),
                    sets={n: dict(images=s.images, ann_root=s.ann_root, title=s.title)
                          for n, s in self.layout.sets.items()},
                    train_crops=self.train_crops,
                    export_teacher=bool(self.spec.get('export_teacher')), report=self.spec.get('report', {}))

    def write_report_context(self) -> None:  # see mmbus.reporting.context for when (after build())
        atomic_write_json(self.report_context(), self.p(CONTEXT_FILE), indent=1, default=str)

    def report(self) -> dict:
        """The report stage: the context, then the report from the work dir alone."""
        from mmbus.reporting.report import make_report
        self.write_report_context()
        return make_report(self.work_dir)

    def _record_start(self) -> None:  # a study stopped before its report still reports what finished
        atomic_write(self.p(SPEC_FILE), self.spec.dump)
        if not osp.isfile(self.p(CONTEXT_FILE)):
            self.write_report_context()

    def run(self) -> dict:
        os.makedirs(self.work_dir, exist_ok=True)
        items = self.build()
        env = dict(os.environ)
        if self.jobs > 1 and 'OMP_NUM_THREADS' not in env:
            env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 2) // self.jobs))
        self._runner = StageRunner(self.work_dir, self.force, self.jobs, cwd=REPO_ROOT, env=env,
                                   keep_going=self.keep_going)
        print(f'[study] {self.name}: work dir {self.work_dir}; schedule {self.schedule}; '
              f'{len(self.runs)} stage-2 run(s)', flush=True)
        t0 = time.time()
        try:
            self._runner.run(items, on_start=self._record_start)
        finally:
            print(summary_line(self._runner.records, self._runner.total, time.time() - t0), flush=True)
        return dict(records=self._runner.records, wall_s=time.time() - t0, report=self.p('report', 'report.md'))


def deadline_env(share: Optional[float]):
    """A stage environment that ends training at ``share`` of the time left before ``$MMBUS_STOP_AT``,
    counted from the moment the stage starts (a detector another one starts from needs to finish first), but
    never under twice ``MIN_TRAIN_S`` while that much is left: a share of a short window would otherwise fall
    under the least a run is started with, and the stage would be refused with time to spare."""
    if share is None:
        return None

    def env():
        stop_at = parse_deadline(os.environ.get(DEADLINE_ENV), DEADLINE_ENV)
        if stop_at is None:
            return {}
        now = time.time()
        left = max(0.0, stop_at - now)
        return {DEADLINE_ENV: f'{now + max(float(share) * left, min(left, 2 * MIN_TRAIN_S)):.0f}'}
    return env
