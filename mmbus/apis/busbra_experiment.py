"""End-to-end BUS-BRA experiment helpers (GitHub issue 7).

The experiment re-uses the project's own configs and CLIs and only rewrites
*paths and schedule lengths* of an existing config, so that the numbers come
from exactly the code a user runs:

* :func:`detector_config` -- a detector config (default the CPU-quick Faster
  R-CNN VGG16) pointed at a converted dataset (``data_root`` = dataset root,
  ``<ann_dir>/{basic_train,val,test}.json``), with ``max_iters`` and the input
  size (pixels, longer-side bound, aspect ratio kept) as knobs.
* :func:`classifier_config` -- a crop-classifier config (mean teacher,
  supervised-basic, supervised-all) pointed at a crops dataset (data contract,
  written by ``tools/extract_crops.py``), with the number of epochs and the
  epoch length (iterations) as knobs; the test split may come from another
  crop dir (detector crops) whose ``test_missed.json`` is then counted as
  failures by ``BinaryDiagnosticMetric``.
* :class:`PredictionBoxes` -- detector boxes read back from the ``--out``
  pickle of ``tools/test.py`` so the detector is run once on the test split
  (metrics and crops from the same forward pass; on 2 CPU cores inference over
  375 images costs minutes).
* :func:`plot_rocs`, :func:`metrics_table` -- one ROC figure for the three
  methods and Markdown tables with 95% CIs.

Conventions: boxes ``[x1, y1, x2, y2]`` in source-image pixels (the mmdet
prediction format); classes 0 = benign, 1 = malignant (positive).
"""

import csv
import glob
import json
import os
import os.path as osp
import pickle

import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmbus.utils.io import atomic_write, atomic_write_json

#: The paper's Table 3 methods -> CPU-sized configs of the classifier developer.
METHOD_CONFIGS = {
    'mean_teacher': 'configs/mmbus/mean_teacher_bus_cpu_quick.py',
    'supervised_basic': 'configs/mmbus/supervised_basic_bus_cpu_quick.py',
    'supervised_all': 'configs/mmbus/supervised_all_bus_cpu_quick.py',
}
METHOD_TITLES = {
    'mean_teacher': 'Mean teacher (basic labelled + extended unlabelled)',
    'supervised_basic': 'Supervised-basic (basic-train labels only)',
    'supervised_all': 'Supervised-all (basic + extended, all labels)',
}
DETECTOR_CONFIG = 'configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py'
#: Recognition-network sizes: ``cpu_quick`` (1/4-width MTConvNet, 32 px crops,
#: 16 + 16 per batch) for this 2-core machine; ``paper`` (full width, 64 px,
#: 64 + 64 per batch, Adam 0.003), the paper's network, for a GPU.
CONFIG_SETS = ('cpu_quick', 'paper')


def method_config(method: str, config_set: str = 'cpu_quick') -> str:
    """Repo-relative config of a Table 3 method in a config set."""
    if method not in METHOD_CONFIGS:
        raise ValueError(f'unknown method {method!r}; choose from '
                         f'{sorted(METHOD_CONFIGS)}')
    if config_set not in CONFIG_SETS:
        raise ValueError(f'unknown config set {config_set!r}; choose from '
                         f'{CONFIG_SETS}')
    path = METHOD_CONFIGS[method]
    return path if config_set == 'cpu_quick' else path.replace(
        '_cpu_quick.py', '.py')


# ----------------------------------------------------------------- configs
def _walk(obj, fn):
    """Call ``fn(d)`` on every dict nested in ``obj`` (lists included)."""
    if isinstance(obj, dict):
        fn(obj)
        for v in obj.values():
            _walk(v, fn)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _walk(v, fn)


def _as_dict(cfg):
    from mmengine.config import Config
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    return cfg


def detector_config(base: str, data_root: str, ann_dir: str, max_iters: int,
                    img_scale: int = 224, seed: int = 0):
    """A detector config trained on ``ann_dir/basic_train.json``.

    Args:
        base: mmdet config path (its pipelines must contain ``Resize``).
        data_root: dataset root the COCO ``file_name`` entries are relative
            to (e.g. ``.../BUS-BRA/BUSBRA``).
        ann_dir: folder with ``basic_train.json``, ``val.json``, ``test.json``.
        max_iters: training iterations (batches); validation and the single
            checkpoint happen at the end; an ``ExponentialLR`` in the base is
            rescaled to decay by the same overall factor over ``max_iters``.
        img_scale: ``Resize`` bound in pixels (square, aspect ratio kept).
    """
    if max_iters < 1:
        raise ValueError(f'max_iters must be >= 1, got {max_iters}')
    cfg = _as_dict(base)
    ann_dir = osp.abspath(ann_dir)
    root = osp.abspath(data_root).rstrip('/') + '/'
    for loader, split in (('train_dataloader', 'basic_train'),
                          ('val_dataloader', 'val'),
                          ('test_dataloader', 'test')):
        ds = cfg[loader]['dataset']
        ds['data_root'] = root
        ds['ann_file'] = osp.join(ann_dir, f'{split}.json')
    for ev, split in (('val_evaluator', 'val'), ('test_evaluator', 'test')):
        evs = cfg[ev] if isinstance(cfg[ev], list) else [cfg[ev]]
        for e in evs:
            if 'ann_file' in e:
                e['ann_file'] = osp.join(ann_dir, f'{split}.json')

    def resize(d):
        if d.get('type') == 'Resize' and 'scale' in d:
            d['scale'] = (img_scale, img_scale)

    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _walk(cfg[loader], resize)
    old_iters = cfg.train_cfg.get('max_iters', max_iters)
    cfg.train_cfg['max_iters'] = max_iters
    cfg.train_cfg['val_interval'] = max_iters
    for s in cfg.get('param_scheduler', []) or []:
        if s.get('type') == 'ExponentialLR' and s.get('end') == old_iters:
            total = s['gamma']**old_iters  # overall decay factor kept
            s['gamma'] = total**(1.0 / max_iters)
            s['end'] = max_iters
        elif s.get('end', 0) > max_iters:
            s['end'] = max_iters
    cfg.default_hooks['checkpoint']['interval'] = max_iters
    cfg['randomness'] = dict(seed=seed)
    return cfg


def classifier_config(base: str, crop_root: str, epochs: Optional[int] = None,
                      epoch_length: Optional[int] = None,
                      test_crop_root: Optional[str] = None,
                      test_split: str = 'test',
                      labelled_ann: Optional[str] = None,
                      unlabelled_ann: Optional[str] = None,
                      roc_dir: Optional[str] = None, seed: int = 0,
                      ema: Optional[dict] = None,
                      consistency_weight: Optional[float] = None):
    """A crop-classifier config pointed at ``crop_root``.

    Args:
        base: mmpretrain config (one of :data:`METHOD_CONFIGS`).
        crop_root: crops dataset (``<split>.json`` + ``<split>/`` PNGs) used
            for training and validation.
        epochs: ``train_cfg.max_epochs`` (None: keep the base).
        epoch_length: iterations per epoch of the labelled/unlabelled sampler
            (None: keep).
        test_crop_root: crops dataset of the test split (default
            ``crop_root``), e.g. detector crops; its
            ``<test_split>_missed.json`` is counted by the test metric.
        labelled_ann / unlabelled_ann: replace the training ``basic_train.json``
            / ``extended_train.json`` by these files (absolute paths; their
            ``img_path`` entries must still be relative to ``crop_root``) --
            the learning-curve subsets.
        roc_dir: where the test metric writes ``<prefix>_roc.{png,csv}``.
        ema: mean teacher only: ``rampup_iters`` (consistency ramp-up,
            iterations), ``momentum`` / ``rampup_momentum`` of the
            ``MeanTeacherHook`` (mmengine convention: momentum = 1 - decay);
            see :func:`short_schedule_ema`.
        consistency_weight: mean teacher only: ``w_max`` of the consistency
            term (None: keep the config's).
    """
    cfg = _as_dict(base)
    root = osp.abspath(crop_root).rstrip('/') + '/'
    test_root = osp.abspath(test_crop_root or crop_root).rstrip('/') + '/'

    def retarget(d):
        if d.get('type') == 'BUSCropDataset' or 'data_root' in d:
            d['data_root'] = root
            ann = d.get('ann_file')
            if ann == 'basic_train.json' and labelled_ann:
                d['ann_file'] = osp.abspath(labelled_ann)
            elif ann == 'extended_train.json' and unlabelled_ann:
                d['ann_file'] = osp.abspath(unlabelled_ann)

    _walk(cfg.train_dataloader, retarget)
    _walk(cfg.val_dataloader, retarget)
    test_ds = cfg.test_dataloader['dataset']
    test_ds['data_root'] = test_root
    test_ds['ann_file'] = f'{test_split}.json'
    missed = osp.join(test_root, f'{test_split}_missed.json')
    evs = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
        else [cfg.test_evaluator]
    for e in evs:
        if e.get('type') == 'BinaryDiagnosticMetric':
            e['missed'] = missed if osp.isfile(missed) else None
            if roc_dir:
                e['output_dir'] = osp.abspath(roc_dir)
    if epochs is not None:
        cfg.train_cfg['max_epochs'] = int(epochs)
    if epoch_length is not None:
        cfg.train_dataloader['sampler']['epoch_length'] = int(epoch_length)
    if ema and cfg.model.get('type') == 'SemiClassifier':
        if 'rampup_iters' in ema:
            cfg.model['rampup_iters'] = int(ema['rampup_iters'])
        for h in cfg.get('custom_hooks', []):
            if h.get('type') == 'MeanTeacherHook':
                for k in ('momentum', 'rampup_momentum'):
                    if k in ema:
                        h[k] = float(ema[k])
    if consistency_weight is not None and \
            cfg.model.get('type') == 'SemiClassifier':
        cfg.model['consistency_weight'] = float(consistency_weight)
    cfg['randomness'] = dict(seed=seed)
    return cfg


def total_iters(cfg) -> int:
    """Training iterations of an epoch-based crop config (epochs x
    sampler ``epoch_length``)."""
    return int(cfg.train_cfg['max_epochs']) * int(
        cfg.train_dataloader['sampler']['epoch_length'])


def short_schedule_ema(iters: int) -> dict:
    """Mean-teacher settings for a CPU run of ``iters`` iterations.

    The paper's EMA decays (0.99 during the ramp-up, 0.999 after) suit 40k
    iterations; over a few hundred the teacher would still hold a large share
    of its random initial weights (0.99**80 * 0.999**120 = 0.40 for 200
    iterations). Here: consistency ramp-up over 40% of the run; decay 0.99
    after the ramp-up and 0.97 during it for runs of >= 200 iterations
    (initial-weight share 0.97**80 * 0.99**120 = 0.026 at 200); shorter runs
    scale ``momentum`` (= 1 - decay) by 200 / iters, capped at 0.05 / 0.15,
    so the share stays about as small.
    """
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    momentum = min(0.05, 0.01 * max(1.0, 200.0 / iters))
    return dict(rampup_iters=max(1, int(round(0.4 * iters))),
                rampup_momentum=round(min(0.15, 3 * momentum), 6),
                momentum=round(momentum, 6))


def write_config(cfg, path: str) -> str:
    """Dump ``cfg`` to ``path`` atomically; returns the path."""
    atomic_write(path, cfg.dump)
    return path


# ----------------------------------------------------------------- running
def run_logged(cmd: Sequence[str], log: str, nice: int = 0,
               threads: int = 2) -> float:
    """Run ``cmd`` with ``OMP_NUM_THREADS=threads``, stdout+stderr to
    ``log``; returns the wall time in seconds. Raises ``RuntimeError`` with
    the log tail when the command fails. ``nice`` is added to the caller's
    niceness (0: inherit it; start the driver itself with ``nice``)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    os.makedirs(osp.dirname(osp.abspath(log)), exist_ok=True)
    full = (['nice', '-n', str(nice)] if nice else []) + list(cmd)
    t0 = time.time()
    with open(log, 'w') as f:
        f.write('$ ' + ' '.join(full) + '\n')
        f.flush()
        rc = subprocess.call(full, stdout=f, stderr=subprocess.STDOUT,
                             env=env)
    wall = time.time() - t0
    if rc != 0:
        with open(log) as f:
            tail = ''.join(f.readlines()[-30:])
        raise RuntimeError(f'command failed (exit {rc}), log {log}:\n{tail}')
    return wall


def best_checkpoint(work_dir: str) -> str:
    """The ``best_*.pth`` of a run (mmengine ``save_best``), else the
    latest ``*.pth``."""
    best = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')))
    if best:
        return best[-1]
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
    ckpts = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
    if not ckpts:
        raise FileNotFoundError(f'no checkpoint in {work_dir}')
    return ckpts[-1]


def strip_prefix(metrics: dict) -> dict:
    """``{'teacher/auc': x}`` -> ``{'auc': x}`` (one metric prefix)."""
    out = {}
    for k, v in metrics.items():
        out[k.split('/', 1)[-1]] = v
    return out


# --------------------------------------------------------- detector boxes
class PredictionBoxes:
    """Box source for :func:`mmbus.apis.crop_extraction.extract_split_crops`
    from the prediction pickle of ``tools/test.py --out`` (mmdet
    ``DumpDetResults``: one dict per image with ``img_id`` and
    ``pred_instances`` ``bboxes`` (xyxy, source pixels) and ``scores``).

    Returns the top-scoring box above ``score_thr`` (the paper keeps one
    nodule per image), or every such box with ``keep='all'``.
    """

    name = 'detector'

    def __init__(self, pkl: str, score_thr: float = 0.05, keep: str = 'top'):
        if keep not in ('top', 'all'):
            raise ValueError(f"keep must be 'top' or 'all', got {keep!r}")
        with open(pkl, 'rb') as f:
            preds = pickle.load(f)
        self.by_id = {}
        for p in preds:
            inst = p['pred_instances']
            boxes = _np(inst['bboxes']).reshape(-1, 4)
            scores = _np(inst['scores']).reshape(-1)
            self.by_id[int(p['img_id'])] = (boxes, scores)
        self.score_thr = score_thr
        self.keep = keep
        self.pkl = pkl

    def __call__(self, image_record: dict, img=None):
        key = int(image_record['id'])
        if key not in self.by_id:
            raise KeyError(f'{self.pkl} has no prediction for image id {key} '
                           f'({image_record.get("file_name")})')
        boxes, scores = self.by_id[key]
        order = (-scores).argsort(kind='stable')
        out = [(boxes[i].tolist(), float(scores[i])) for i in order
               if scores[i] >= self.score_thr and boxes[i][2] > boxes[i][0]
               and boxes[i][3] > boxes[i][1]]
        return out[:1] if self.keep == 'top' else out


def _np(x):
    import numpy as np
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


# --------------------------------------------------------------- reporting
def read_roc_csv(path: str) -> Tuple[List[float], List[float]]:
    """``(fpr, tpr)`` from a ``BinaryDiagnosticMetric`` ``*_roc.csv``."""
    fpr, tpr = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            fpr.append(float(row['fpr']))
            tpr.append(float(row['tpr']))
    return fpr, tpr


def plot_rocs(curves: Dict[str, Tuple[Sequence[float], Sequence[float]]],
              aucs: Dict[str, dict], path: str, title: str) -> str:
    """One ROC figure: ``curves[name] = (fpr, tpr)``; legend shows the AUC
    and its 95% CI from ``aucs[name]`` (``auc``, ``auc_ci_low/high``)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    for name, (fpr, tpr) in curves.items():
        m = aucs.get(name, {})
        lab = name
        if 'auc' in m:
            lab += (f" AUC {m['auc']:.3f} [{m.get('auc_ci_low', float('nan')):.3f}"
                    f", {m.get('auc_ci_high', float('nan')):.3f}]")
        ax.plot(fpr, tpr, lw=2, label=lab)
    ax.plot([0, 1], [0, 1], '--', color='grey', lw=1)
    ax.set_xlabel('1 - specificity (false positive rate)')
    ax.set_ylabel('sensitivity (true positive rate)')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=9)
    ax.legend(loc='lower right', fontsize=7)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return path


def _save_fig(fig, path: str) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png'))


def _pct_ci(m: dict, name: str) -> str:
    if name not in m:
        return 'n/a'
    v, lo, hi = m[name], m.get(f'{name}_ci_low'), m.get(f'{name}_ci_high')
    scale = 1.0 if name == 'auc' else 100.0
    fmt = '{:.3f}' if name == 'auc' else '{:.1f}'
    s = fmt.format(v * scale)
    if lo is not None and hi is not None:
        s += ' [' + fmt.format(lo * scale) + ', ' + fmt.format(hi * scale) + ']'
    return s


def metrics_table(rows: Dict[str, dict]) -> str:
    """Markdown table: one row per method; AUC (0-1) and sensitivity,
    specificity, accuracy (%) each with its 95% CI; n and misses."""
    head = ['Method', 'AUC [95% CI]', 'Sensitivity % [95% CI]',
            'Specificity % [95% CI]', 'Accuracy % [95% CI]', 'n', 'missed']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    for name, m in rows.items():
        lines.append('| ' + ' | '.join([
            name, _pct_ci(m, 'auc'), _pct_ci(m, 'sensitivity'),
            _pct_ci(m, 'specificity'), _pct_ci(m, 'accuracy'),
            str(int(m.get('num_samples', 0))),
            str(int(m.get('num_missed', 0)))]) + ' |')
    return '\n'.join(lines)


def check_targets(auc: Dict[str, float], tol_all: float = 0.02,
                  margin_basic: float = 0.05) -> List[dict]:
    """The issue's targets: mean teacher within ``tol_all`` AUC of
    supervised-all and at least ``margin_basic`` above supervised-basic."""
    mt, sa, sb = (auc.get(k) for k in ('mean_teacher', 'supervised_all',
                                       'supervised_basic'))
    out = []
    if mt is not None and sa is not None:
        out.append(dict(target=f'|MT - supervised-all| <= {tol_all}',
                        value=round(mt - sa, 4),
                        met=bool(abs(mt - sa) <= tol_all)))
    if mt is not None and sb is not None:
        out.append(dict(target=f'MT - supervised-basic >= {margin_basic}',
                        value=round(mt - sb, 4),
                        met=bool(mt - sb >= margin_basic)))
    return out


def dump_json(obj, path: str) -> None:
    """Atomic JSON write."""
    atomic_write_json(obj, path, indent=2, default=float)


def python() -> str:
    """The interpreter running us (the project's .venv)."""
    return sys.executable


def tool(rel: str) -> str:
    """Absolute path of a repo tool, e.g. ``tools/train.py``."""
    return osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), rel)


def repo_path(rel: str) -> str:
    return tool(rel)





# ------------------------------------------------------------- orchestration
class Experiment:
    """Steps 1-3 of issue 7 under one work dir; every step is skipped when
    its output exists (delete the output, or pass ``force=True``, to redo).

    Layout of ``work_dir``::

        data/annotations/*.json        converter + patient-grouped split
        crops_gt/                       ground-truth crops, all splits
        detector/                       detector training (+ test/ metrics,
                                        predictions.pkl)
        crops_det/                      test-split crops from detector boxes
        configs/*.py                    every config actually run
        cls/<method>/                   classifier training, test_gt/,
                                        test_det/ (metrics.json, ROC csv/png)
        results.json, results.md, roc_gt.png, roc_det.png
    """

    def __init__(self, data_root: str, work_dir: str = 'work_dirs/busbra',
                 ratios: str = 'basic_train=0.12,extended_train=0.65,'
                 'val=0.03,test=0.2', seed: int = 0, det_iters: int = 160,
                 det_scale: int = 224, cls_epochs: Optional[int] = None,
                 cls_epoch_length: Optional[int] = None,
                 methods: Sequence[str] = tuple(METHOD_CONFIGS),
                 score_thr: float = 0.05, skip_detector: bool = False,
                 det_test_shards: int = 1, config_set: str = 'cpu_quick',
                 consistency_weight: Optional[float] = None,
                 force: bool = False, log=print):
        self.data_root = osp.abspath(data_root)
        self.work_dir = osp.abspath(work_dir)
        self.ratios, self.seed = ratios, seed
        self.det_iters, self.det_scale = det_iters, det_scale
        self.cls_epochs, self.cls_epoch_length = cls_epochs, cls_epoch_length
        unknown = set(methods) - set(METHOD_CONFIGS)
        if unknown:
            raise ValueError(f'unknown methods {sorted(unknown)}; choose from '
                             f'{sorted(METHOD_CONFIGS)}')
        self.methods = list(methods)
        self.method_configs = {m: repo_path(method_config(m, config_set))
                               for m in self.methods}
        self.consistency_weight = consistency_weight
        self.score_thr = score_thr
        self.skip_detector = skip_detector
        self.det_test_shards = det_test_shards
        self.force = force
        self.log = log
        self.walls: Dict[str, float] = {}
        self.commands: List[str] = []

    # paths
    def p(self, *parts) -> str:
        return osp.join(self.work_dir, *parts)

    @property
    def ann_dir(self) -> str:
        return self.p('data', 'annotations')

    def _run(self, name: str, cmd: List[str], done: str) -> None:
        self.commands.append(' '.join(cmd))
        if osp.exists(done) and not self.force:
            self.log(f'[busbra] {name}: done ({done})')
            return
        self.log(f'[busbra] {name}: running, log {self.p("logs", name)}.log')
        self.walls[name] = run_logged(cmd, self.p('logs', f'{name}.log'))
        self.log(f'[busbra] {name}: {self.walls[name]:.0f} s')

    # steps
    def convert(self) -> None:
        self._run('convert', [
            python(), tool('tools/dataset_converters/bus_to_coco.py'),
            self.data_root, '--format', 'busbra', '--out-dir',
            self.p('data'), '--split', 'ratios', '--ratios', self.ratios,
            '--seed', str(self.seed), '--no-progress'
        ], osp.join(self.ann_dir, 'test.json'))

    def gt_crops(self) -> None:
        self._run('crops_gt', [
            python(), tool('tools/extract_crops.py'), self.data_root,
            '--ann-dir', self.ann_dir, '--splits', 'basic_train',
            'extended_train', 'val', 'test', '--out-dir', self.p('crops_gt'),
            '--no-progress'
        ], self.p('crops_gt', 'test.json'))

    def detector(self) -> None:
        cfg = detector_config(repo_path(DETECTOR_CONFIG), self.data_root,
                              self.ann_dir, self.det_iters, self.det_scale,
                              self.seed)
        cfg_path = write_config(cfg, self.p('configs', 'detector.py'))
        wd = self.p('detector')
        self._run('detector_train', [
            python(), tool('tools/train.py'), cfg_path, '--work-dir', wd
        ], osp.join(wd, f'iter_{self.det_iters}.pth'))
        ckpt = osp.join(wd, f'iter_{self.det_iters}.pth')
        if self.det_test_shards > 1:
            done = osp.join(wd, 'test', 'metrics.json')
            self.commands.append(f'sharded tools/test.py x{self.det_test_shards}'
                                 f' + offline evaluation (see {__name__})')
            if osp.exists(done) and not self.force:
                self.log(f'[busbra] detector_test: done ({done})')
                return
            t0 = time.time()
            sharded_detector_test(cfg_path, ckpt,
                                  osp.join(self.ann_dir, 'test.json'),
                                  osp.join(wd, 'test'), self.det_test_shards,
                                  log=self.log)
            self.walls['detector_test'] = time.time() - t0
            return
        self._run('detector_test', [
            python(), tool('tools/test.py'), cfg_path, ckpt, '--work-dir',
            osp.join(wd, 'test'), '--out',
            osp.join(wd, 'test', 'predictions.pkl'), '--out-metrics',
            osp.join(wd, 'test', 'metrics.json')
        ], osp.join(wd, 'test', 'metrics.json'))

    def det_crops(self) -> dict:
        from mmbus.apis.crop_extraction import extract_split_crops
        done = self.p('crops_det', 'test.json')
        if osp.exists(done) and not self.force:
            self.log(f'[busbra] crops_det: done ({done})')
            return {}
        boxes = PredictionBoxes(self.p('detector', 'test', 'predictions.pkl'),
                                score_thr=self.score_thr)
        t0 = time.time()
        summary = extract_split_crops(
            osp.join(self.ann_dir, 'test.json'), self.data_root,
            self.p('crops_det'), 'test', box_source=boxes,
            show_progress=False)
        self.walls['crops_det'] = time.time() - t0
        self.log(f'[busbra] crops_det: {summary}')
        return summary

    def classifier(self, method: str) -> None:
        wd = self.p('cls', method)
        cfg = classifier_config(
            self.method_configs[method], self.p('crops_gt'),
            self.cls_epochs, self.cls_epoch_length,
            roc_dir=osp.join(wd, 'test_gt'), seed=self.seed)
        ema = short_schedule_ema(total_iters(cfg))
        cfg = classifier_config(cfg, self.p('crops_gt'),
                                roc_dir=osp.join(wd, 'test_gt'),
                                seed=self.seed, ema=ema,
                                consistency_weight=self.consistency_weight)
        cfg_path = write_config(cfg, self.p('configs', f'{method}.py'))
        # marker written only after a successful run (a checkpoint alone may
        # come from a run still in progress or interrupted)
        done = osp.join(wd, 'train_done.json')
        self._run(f'{method}_train', [
            python(), tool('tools/train.py'), cfg_path, '--work-dir', wd
        ], done)
        if not osp.exists(done):
            dump_json(dict(config=cfg_path,
                           wall_s=self.walls.get(f'{method}_train')), done)
        tests = [('gt', self.p('crops_gt'))]
        if self.has_det_crops:
            tests.append(('det', self.p('crops_det')))
        for tag, root in tests:
            out = osp.join(wd, f'test_{tag}')
            tcfg = classifier_config(
                self.method_configs[method], self.p('crops_gt'),
                self.cls_epochs, self.cls_epoch_length, test_crop_root=root,
                roc_dir=out, seed=self.seed)
            tpath = write_config(tcfg,
                                 self.p('configs', f'{method}_test_{tag}.py'))
            ckpt = best_checkpoint(wd) if osp.isdir(wd) else 'BEST_CKPT'
            self._run(f'{method}_test_{tag}', [
                python(), tool('tools/test.py'), tpath, ckpt, '--work-dir',
                out, '--out-metrics', osp.join(out, 'metrics.json')
            ], osp.join(out, 'metrics.json'))

    @property
    def has_det_crops(self) -> bool:
        """Classifiers are also tested on detector crops when the detector
        runs here or its test crops are already in ``crops_det/`` (e.g. made
        on another machine)."""
        return (not self.skip_detector
                or osp.isfile(self.p('crops_det', 'test.json')))

    def report(self) -> dict:
        return write_report(self.work_dir, self.methods,
                            ['gt'] + (['det'] if self.has_det_crops else []),
                            extra=dict(walls_s=self.walls,
                                       commands=self.commands))

    def run(self) -> dict:
        self.convert()
        self.gt_crops()
        if not self.skip_detector:
            self.detector()
            self.det_crops()
        for m in self.methods:
            self.classifier(m)
        return self.report()


def shard_coco(ann_file: str, out_dir: str, shards: int) -> List[str]:
    """Split a COCO file into ``shards`` files by image (round robin; each
    image keeps all its annotations). Returns the shard paths."""
    with open(ann_file) as f:
        coco = json.load(f)
    paths = []
    for k in range(shards):
        ims = coco['images'][k::shards]
        ids = {im['id'] for im in ims}
        part = dict(coco, images=ims,
                    annotations=[a for a in coco['annotations']
                                 if a['image_id'] in ids])
        path = osp.join(out_dir, f'shard{k}.json')
        dump_json(part, path)
        paths.append(path)
    return paths


def sharded_detector_test(cfg_path: str, ckpt: str, ann_file: str,
                          out_dir: str, shards: int, log=print) -> dict:
    """Run ``tools/test.py`` on ``shards`` disjoint parts of ``ann_file`` in
    parallel processes (throughput on a shared CPU), merge the dumped
    predictions into ``out_dir/predictions.pkl`` and evaluate them once on
    the whole file (CocoMetric bbox + BoxIoUMetric top_score, the detector
    config's test metrics) into ``out_dir/metrics.json``."""
    os.makedirs(out_dir, exist_ok=True)
    parts = shard_coco(ann_file, osp.join(out_dir, 'shards'), shards)
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    procs = []
    for k, part in enumerate(parts):
        cmd = [python(), tool('tools/test.py'), cfg_path, ckpt, '--work-dir',
               osp.join(out_dir, 'shards', f'wd{k}'), '--out',
               osp.join(out_dir, 'shards', f'pred{k}.pkl'), '--cfg-options',
               f'test_dataloader.dataset.ann_file={part}',
               f'test_evaluator.0.ann_file={part}']
        logf = open(osp.join(out_dir, 'shards', f'test{k}.log'), 'w')
        procs.append((subprocess.Popen(cmd, stdout=logf,
                                       stderr=subprocess.STDOUT, env=env),
                      logf, k))
    for p, logf, k in procs:
        rc = p.wait()
        logf.close()
        if rc != 0:
            raise RuntimeError(f'detector test shard {k} failed (exit {rc}), '
                               f'log {logf.name}')
    preds = []
    for k in range(shards):
        with open(osp.join(out_dir, 'shards', f'pred{k}.pkl'), 'rb') as f:
            preds += pickle.load(f)
    with open(osp.join(out_dir, 'predictions.pkl.tmp'), 'wb') as f:
        pickle.dump(preds, f)
    os.replace(osp.join(out_dir, 'predictions.pkl.tmp'),
               osp.join(out_dir, 'predictions.pkl'))
    metrics = evaluate_detections(preds, ann_file)
    dump_json(metrics, osp.join(out_dir, 'metrics.json'))
    log(f'[busbra] detector test (sharded x{shards}): {metrics}')
    return metrics


def evaluate_detections(preds: List[dict], ann_file: str) -> dict:
    """COCO bbox mAP + BoxIoUMetric(top_score) of dumped mmdet predictions
    against ``ann_file`` (ground truth read from the file)."""
    import mmbus.registry  # noqa: F401  registers BoxIoUMetric
    from mmdet.evaluation import CocoMetric
    from mmengine.evaluator import Evaluator
    from mmbus.evaluation.box_iou_metric import BoxIoUMetric
    ev = Evaluator([CocoMetric(ann_file=ann_file, metric='bbox'),
                    BoxIoUMetric(best_box='top_score', ann_file=ann_file)])
    ev.dataset_meta = dict(classes=('nodule', ))
    return {k: float(v) for k, v in ev.offline_evaluate(preds).items()}


def _roc_csv(out_dir: str) -> Optional[str]:
    found = sorted(glob.glob(osp.join(out_dir, '*_roc.csv')))
    # the mean teacher's test metric is prefixed 'teacher', others 'diag'
    return found[0] if found else None


def write_report(work_dir: str, methods: Sequence[str],
                 tags: Sequence[str] = ('gt', 'det'),
                 extra: Optional[dict] = None) -> dict:
    """Collect ``cls/<method>/test_<tag>/metrics.json`` (+ ROC CSVs) and the
    detector metrics into ``results.json``, ``results.md`` and one ROC PNG
    per test-crop source (``roc_<tag>.png``)."""
    res = dict(classification={}, detection=None, targets={}, rocs={})
    tag_title = dict(gt='test crops from ground-truth boxes',
                     det='test crops from detector boxes (misses = wrong)')
    md = ['# BUS-BRA end-to-end results', '']
    det_m = osp.join(work_dir, 'detector', 'test', 'metrics.json')
    if osp.isfile(det_m):
        with open(det_m) as f:
            res['detection'] = json.load(f)
        md += ['## Stage 1: detector on the test split', '',
               '| Metric | Value |', '|---|---|']
        md += [f'| {k} | {v:.4f} |' if isinstance(v, float) else
               f'| {k} | {v} |' for k, v in res['detection'].items()]
        md.append('')
    for tag in tags:
        rows, curves = {}, {}
        for m in methods:
            out = osp.join(work_dir, 'cls', m, f'test_{tag}')
            mf = osp.join(out, 'metrics.json')
            if not osp.isfile(mf):
                continue
            with open(mf) as f:
                rows[m] = strip_prefix(json.load(f))
            roc = _roc_csv(out)
            if roc:
                curves[m] = read_roc_csv(roc)
        if not rows:
            continue
        res['classification'][tag] = rows
        res['targets'][tag] = check_targets(
            {m: r['auc'] for m, r in rows.items() if 'auc' in r})
        md += [f'## Stage 2: classifiers, {tag_title.get(tag, tag)}', '',
               metrics_table(rows), '']
        for t in res['targets'][tag]:
            md.append(f"- target {t['target']}: {t['value']:+.4f} -> "
                      f"{'met' if t['met'] else 'NOT met'}")
        if curves:
            png = osp.join(work_dir, f'roc_{tag}.png')
            plot_rocs(curves, rows, png,
                      f'BUS-BRA test split, {tag_title.get(tag, tag)}')
            res['rocs'][tag] = png
            md += ['', f'ROC: `{png}`']
        md.append('')
    if extra:
        res.update(extra)
        if extra.get('walls_s'):
            md += ['## Wall times (this invocation)', '',
                   '| Step | s |', '|---|---|']
            md += [f'| {k} | {v:.0f} |' for k, v in extra['walls_s'].items()]
    dump_json(res, osp.join(work_dir, 'results.json'))
    with open(osp.join(work_dir, 'results.md.tmp'), 'w') as f:
        f.write('\n'.join(md) + '\n')
    os.replace(osp.join(work_dir, 'results.md.tmp'),
               osp.join(work_dir, 'results.md'))
    return res
