"""Stage 2 of a study: one chain per (grid point, method) run (its derived config, training, validation
predictions and calibration, its tests and result rows) and the mean teacher's exports."""
import os.path as osp
from typing import List, Optional, Tuple

from mmbus.reporting import diagnostics
from mmbus.reporting.curves import convergence, run_curves
from mmbus.reporting.methods import method_info, title
from mmbus.reporting.results import load_json, plain_metrics, write_row
from mmbus.utils.checkpoint import find_checkpoint
from mmbus.utils.io import atomic_write_json
from .configs import derive_config, has_key, shipped_config
from .data import py, tool
from .spec import find_values, metric_index, rebase_overrides
from .stages import Stage

#: the validation split as a test set: where each run's calibration is fitted
#: the validation predictions a run's calibration is fitted on (a name of its own: a spec's test set may be
#: called ``val`` and is then scored like any test, with the calibration)
VAL_TEST = dict(name='calibration_val', crops=None, split='val', title='validation crops')


def best(work_dir: str) -> str:
    """The checkpoint of a training work dir chosen on validation (its best one), else its last."""
    return find_checkpoint(work_dir, prefer_best=True)


class ClassifierStages:
    """The stage-2 half of :class:`.engine.Study` (its ``spec``, ``methods``, ``runs``, ``calibrate``, ...)."""

    @property
    def train_crops(self) -> str:
        return self.spec.get('train_crops', 'main')

    def classifier_config(self, run: dict, test: Optional[dict] = None) -> str:
        from mmengine.config import Config
        m, point = run['method'], run['grid']
        src = shipped_config(self.methods[m].get('config', method_info(m)['config']), self.schedule)
        base = Config.fromfile(src)
        ov = rebase_overrides(base, self.crop_root(self.train_crops, point))
        if 'labelled_share' in point:
            sub = self.p('subsets', run['gid'] or 'all')
            files = find_values(base, lambda k, v: k == 'ann_file', ['train_dataloader'])
            swap = {'basic_train.json': 'labelled.json', 'extended_train.json': 'unlabelled.json'}
            if not set(files.values()) & set(swap):  # the share would be ignored: refuse
                raise ValueError(f'{src}: labelled_share needs a training ann_file basic_train.json or '
                                 f'extended_train.json to replace with its subsets; it has {sorted(files.values())}')
            ov.update({k: osp.join(sub, swap[v]) for k, v in files.items() if v in swap})
        ov['randomness.seed'] = self.data.get('seed', 0)  # the study's seed, a method's own, a grid seed: the last wins
        ov.update(self.methods[m].get('overrides', {}))
        if 'seed' in point:
            ov['randomness.seed'] = point['seed']
        ov.update({k: v for k, v in point.items() if k not in ('seed', 'labelled_share')})
        # toy settings change what a method's config has (rampup_iters exists only in the mean teacher)
        ov.update({k: v for k, v in self.toy.get('classifier', {}).items() if has_key(base, k)})
        ov.update(self.toy.get('methods', {}).get(m, {}))
        name = run['id']
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
        out = self.p('configs', f'{name}.py')
        derive_config(src, ov, out)
        return out

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
            crops = self.crop_root(self.train_crops, point)
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
                lambda t=t, base=base: py(test, self.classifier_config(run, t), best(wd), '--work-dir', base,
                                          '--out', base + '/predictions.pkl', '--out-metrics', base + '/metrics.json'),
                inputs=lambda t=t, root=root: [self.p('configs', f"{run['id']}_test_{t['name']}.py"), best(wd),
                                               osp.join(root, f"{t['split']}.json")] + (
                                                   [self.calibration_file(run)] if self.calibrate else []),
                outputs=[base + '/predictions.pkl', base + '/metrics.json'],
                desc=f"{title(run['method'])} on {t.get('title', t['name'])}"))
        if tests:
            name = f"row_{run['id']}" if train else f"row_{run['id']}_" + '_'.join(t['name'] for t in tests)
            chain.append(Stage(name, func=lambda: self.write_rows(run, tests),
                               inputs=[osp.join(wd, f"test_{t['name']}", 'metrics.json') for t in tests],
                               params=dict(extras=list(self.spec.get('extras', []))),
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
        wd = run['dir']
        base = osp.join(wd, 'val_predictions')
        root = self.crop_root(self.train_crops, run['grid'])
        val = dict(VAL_TEST, crops=self.train_crops)
        missed = osp.join(root, 'val_missed.json')
        return [
            Stage(f"val_{run['id']}",
                  lambda: py(tool('tools/test.py'), self.classifier_config(run, val), best(wd), '--work-dir', base,
                             '--out', base + '/predictions.pkl'),
                  inputs=lambda: [self.p('configs', f"{run['id']}_test_{VAL_TEST['name']}.py"), best(wd),
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
        curves = run_curves(wd, monitor, skip)
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
                       checkpoint=self.rel(best(wd)), train_s=train_s,
                       # where the report reads the run's validation curves, and which of them it selected on
                       run_dir=self.rel(wd), monitors=dict(monitor=monitor, raw=raw, skip=skip))
            row['extras'] = {k: v for name in self.spec.get('extras', [])
                             for k, v in diagnostics.compute(name, osp.join(base, 'predictions.pkl'), root).items()}
            row['convergence'] = convergence(curves, monitor)
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

    # -- the mean teacher (of the first grid point) as a plain classifier and as a portable bundle ----------
    def export_stage(self) -> Stage:
        exp = tool('tools/export_teacher.py')
        run = next(r for r in self.runs if r['method'] == 'mean_teacher')
        out = self.p('export')
        return Stage('export_teacher',
                     lambda: py(exp, self.p('configs', f"{run['id']}.py"), best(run['dir']), '--out-dir', out),
                     inputs=lambda: [self.p('configs', f"{run['id']}.py"), best(run['dir'])],
                     outputs=[osp.join(out, 'teacher.pth'), osp.join(out, 'teacher_config.py')],
                     desc='mean teacher -> plain mmpretrain ImageClassifier')

    def bundle_stages(self) -> List[Stage]:
        """ONNX recogniser checked against PyTorch, its calibration from validation, and a model card with the
        study's data counts and its test figures on the first test set."""
        run = next(r for r in self.runs if r['method'] == 'mean_teacher')
        t = self.test_sets()[0]
        out, info = self.p('bundle'), self.p('bundle_card_info.json')
        metrics = osp.join(run['dir'], f"test_{t['name']}", 'metrics.json')

        def count(crops_file):
            return len((load_json(crops_file) or {}).get('data_list', []))

        def card_info():
            crops = self.crop_root(self.train_crops, run['grid'])
            sub = self.p('subsets', run['gid'] or 'all')
            if 'labelled_share' in run['grid']:
                lab, unl = (osp.join(sub, f'{x}.json') for x in ('labelled', 'unlabelled'))
            else:
                lab, unl = (osp.join(crops, f'{x}.json') for x in ('basic_train', 'extended_train'))
            split = ', '.join(f"{s} {count(osp.join(crops, f'{s}.json'))}" for s in ('val', 'test'))
            card = dict(name=f'mmbus mean teacher ({self.name})',
                        training_data=f'nodule crops of study {self.name} ({self.train_crops} boxes)',
                        num_labelled=count(lab), num_unlabelled=count(unl),
                        split=f'patient-grouped; crops: {split}; calibration fitted on the validation crops',
                        test_data=t.get('title', t['name']))
            # the spec's own words on the data (``export_bundle=dict(card=dict(training_data=...))``) come first
            card.update(own)
            atomic_write_json(card, info, indent=1)

        opts = self.spec.get('export_bundle')
        own = dict(opts.get('card', {})) if isinstance(opts, dict) else {}
        return [Stage('bundle_card_info', func=card_info, inputs=[metrics], outputs=[info], params=dict(card=own),
                      desc='model card facts from the study'),
                Stage('export_bundle',
                      lambda: py(tool('tools/export_bundle.py'), self.p('configs', f"{run['id']}.py"), best(run['dir']),
                                 '--out-dir', out, '--calibration', self.calibration_file(run), '--metrics', metrics,
                                 '--card-info', info),
                      inputs=lambda: [self.p('configs', f"{run['id']}.py"), best(run['dir']),
                                      self.calibration_file(run), metrics, info],
                      outputs=[osp.join(out, 'recogniser.onnx'), osp.join(out, 'MODEL_CARD.md')],
                      desc='mean teacher -> ONNX bundle with calibration and model card')]
