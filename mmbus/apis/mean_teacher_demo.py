"""The small synthetic stage-2 run: mean teacher vs supervised-basic (and
supervised-all) on generated nodule crops, over several data seeds.

Per seed a fresh crops dataset is generated
(:func:`mmbus.datasets.synthetic_crops.make_crop_set`: a handful of labelled
basic-train crops, many unlabelled extended-train crops, validation and test),
then each method's CPU-quick config is trained and tested through the stock
``tools/train.py`` / ``tools/test.py`` (only the data paths, the seed and the
number of epochs change; the best checkpoint on validation AUC is tested).
One seed is one draw of labelled crops; several seeds show whether a gap
between methods is larger than the luck of that draw.

Outputs in ``work_dir``: ``results.json`` / ``results.md`` (per-seed AUCs with
DeLong 95% CIs, mean and standard deviation per method, mean-teacher minus
supervised-basic per seed; how far each run's test scores follow two
features unrelated to the class, the crop orientation and the brightness,
next to the labelled crops' own orientation and grey level),
``auc_by_seed.png`` and ``seed_<s>/roc.png``; rewritten after every run, so
an interrupted demo keeps what it finished. Each run's test predictions are
kept (``<method>/test/predictions.pkl``). Runs trained with the same config
and data are reused.
"""
import json
import os
import os.path as osp
import shutil
import statistics
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mmbus.apis.busbra_experiment import (_roc_csv, _save_fig, best_checkpoint,
                                          classifier_config, dump_json,
                                          method_config, plot_rocs, python,
                                          read_roc_csv, repo_path, run_logged,
                                          strip_prefix, tool, write_config)
from mmbus.datasets.synthetic_crops import make_crop_set
from mmbus.evaluation.binary_diagnostic_metric import delong_auc, midrank
from mmbus.utils.io import atomic_write

METHODS = ('supervised_basic', 'mean_teacher', 'supervised_all')
#: The README's demo data: 4 labelled crops (2 + 2), 800 unlabelled.
DEFAULT_COUNTS = dict(basic_train=4, extended_train=800, val=200, test=400)


def make_seed_crops(out_dir: str, counts: Dict[str, int], seed: int,
                    difficulty: float, balanced_basic: bool,
                    framing: str = 'random', gain: float = 1.0,
                    basic_gain: Optional[float] = None) -> str:
    """Generate one seed's crops into ``out_dir`` (built under a temporary
    name and renamed, so a half-written dataset is never reused). A dataset
    made with other settings is regenerated (``settings.json`` says which)."""
    settings = dict(counts=dict(counts), seed=seed, difficulty=difficulty,
                    balanced_basic=balanced_basic, framing=framing)
    if gain != 1:  # (keeps the stamps of crops made before this option)
        settings['gain'] = gain
    if basic_gain is not None:
        settings['basic_gain'] = basic_gain
    stamp = osp.join(out_dir, 'settings.json')
    if osp.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == settings:
                return out_dir
    tmp = out_dir + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    make_crop_set(tmp, dict(counts), seed, difficulty,
                  balanced_basic=balanced_basic, framing=framing, gain=gain,
                  basic_gain=basic_gain)
    with open(osp.join(tmp, 'settings.json'), 'w') as f:
        json.dump(settings, f)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def load_predictions(path: str) -> List[dict]:
    """The per-sample results a ``tools/test.py --out`` pickle holds."""
    import mmengine
    return mmengine.load(path)


def _malignancy_scores(preds: List[dict]):
    import numpy as np
    return np.array([float(np.asarray(p['pred_score'])[1]) for p in preds])


def _median_grey(path: str, source: str) -> float:
    import cv2
    import numpy as np
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f'{source}: cannot read {path}')
    return float(np.median(img))


def orientation_auc(preds: List[dict]) -> Optional[float]:
    """How far a run's malignancy scores follow the crops' orientation, a
    feature unrelated to the class: AUC of the scores for "taller than wide"
    over the test crops in ``preds`` (:func:`load_predictions`); square
    crops are left out, ``None`` when either orientation is missing. 0.5:
    orientation ignored; near 0 or 1: the score is largely the orientation
    (letterboxing turns it into padding above-and-below or left-and-right,
    a two-valued feature a few labels can line up with)."""
    import numpy as np
    shapes = np.array([p['ori_shape'][:2] for p in preds], dtype=np.int64)
    keep = shapes[:, 0] != shapes[:, 1]
    portrait = (shapes[:, 0] > shapes[:, 1])[keep]
    if portrait.all() or not portrait.any():
        return None
    return delong_auc(_malignancy_scores(preds)[keep], portrait.astype(int))[0]


def brightness_rho(preds: List[dict], source: str = 'predictions') -> float:
    """Spearman correlation between a run's malignancy scores and the test
    crops' median grey level (another feature unrelated to the class when
    the crops are made with a ``gain`` spread); ``source`` names the
    predictions in the error for an unreadable crop."""
    import numpy as np
    grey = np.array([_median_grey(p['img_path'], source) for p in preds])
    return float(np.corrcoef(midrank(_malignancy_scores(preds)),
                             midrank(grey))[0, 1])


def describe_labelled_crops(ann_file: str) -> List[str]:
    """``'<class> <P|L|S> g<median grey>'`` per labelled crop (portrait,
    landscape, square): shows whether the few labels line up with the
    orientation or the brightness."""
    with open(ann_file) as f:
        data = json.load(f)['data_list']
    out = []
    for d in data:
        w, h = d['bbox'][2] - d['bbox'][0], d['bbox'][3] - d['bbox'][1]
        grey = _median_grey(osp.join(osp.dirname(ann_file), d['img_path']),
                            ann_file)
        out.append(('malignant' if d['gt_label'] else 'benign') + ' ' +
                   ('P' if h > w else 'L' if w > h else 'S') +
                   f' g{int(grey)}')
    return out


def summarise(rows: List[dict]) -> dict:
    """Mean / sd of the test AUC per method, and the per-seed mean-teacher
    minus supervised-basic differences."""
    by_method: Dict[str, List[float]] = {}
    for r in rows:
        by_method.setdefault(r['method'], []).append(r['auc'])
    out = dict(methods={})
    for m, aucs in by_method.items():
        out['methods'][m] = dict(
            n=len(aucs), mean=statistics.fmean(aucs),
            sd=statistics.stdev(aucs) if len(aucs) > 1 else 0.0)
    auc = {(r['seed'], r['method']): r['auc'] for r in rows}
    diffs = {s: auc[(s, 'mean_teacher')] - auc[(s, 'supervised_basic')]
             for s in sorted({r['seed'] for r in rows})
             if (s, 'mean_teacher') in auc and (s, 'supervised_basic') in auc}
    if diffs:
        d = list(diffs.values())
        out['mt_minus_sb'] = dict(
            per_seed=diffs, mean=statistics.fmean(d),
            wins=sum(v > 0 for v in d), n=len(d))
    return out


def results_markdown(rows: List[dict], summary: dict) -> str:
    seeds = sorted({r['seed'] for r in rows})
    methods = [m for m in METHODS if m in summary['methods']]
    cell = {(r['seed'], r['method']): r for r in rows}
    head = ['method'] + [f'seed {s}' for s in seeds] + ['mean ± sd']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for m in methods:
        cells = [m]
        for s in seeds:
            r = cell.get((s, m))
            cells.append('' if r is None else
                         f"{r['auc']:.3f} [{r['auc_ci_low']:.3f}, "
                         f"{r['auc_ci_high']:.3f}]")
        st = summary['methods'][m]
        cells.append(f"{st['mean']:.3f} ± {st['sd']:.3f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    d = summary.get('mt_minus_sb')
    if d:
        cells = ['mean_teacher − supervised_basic'] + [
            f"{d['per_seed'][s]:+.3f}" if s in d['per_seed'] else ''
            for s in seeds] + [f"{d['mean']:+.3f} ({d['wins']}/{d['n']} "
                               'seeds ahead)']
        lines.append('| ' + ' | '.join(cells) + ' |')
    if any('labelled' in r for r in rows):
        lines += ['', 'How far the test scores follow two features unrelated '
                  'to the class: the crop orientation (AUC for "taller than '
                  'wide", 0.5 = ignored, blank for square crops) and the '
                  'brightness (Spearman rho with the median grey level); '
                  'and the labelled crops (P / L / S: taller / wider / '
                  'square, g: median grey level)', '',
                  '| method | ' + ' | '.join(f'seed {s}' for s in seeds) +
                  ' |', '|' + '---|' * (len(seeds) + 1)]
        for m in methods:
            cells = []
            for s in seeds:
                r = cell.get((s, m), {})
                o, b = r.get('orientation_auc'), r.get('brightness_rho')
                parts = []
                if o is not None:
                    parts.append(f'orientation {o:.2f}')
                if b is not None:
                    parts.append(f'brightness {b:+.2f}')
                cells.append(' / '.join(parts))
            lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
        lab = [next((r.get('labelled') for r in rows if r['seed'] == s
                     and r.get('labelled')), None) for s in seeds]
        lines.append('| labelled crops | ' + ' | '.join(
            '' if v is None else ', '.join(v) for v in lab) + ' |')
    return '\n'.join(lines)


def plot_auc_by_seed(rows: List[dict], path: str) -> str:
    """Test AUC with its 95% CI per seed, one marker series per method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    seeds = sorted({r['seed'] for r in rows})
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=110)
    methods = [m for m in METHODS if any(r['method'] == m for r in rows)]
    for k, m in enumerate(methods):
        pts = [(seeds.index(r['seed']) + (k - (len(methods) - 1) / 2) * 0.15, r) for r in rows
               if r['method'] == m]
        ax.errorbar([x for x, _ in pts], [r['auc'] for _, r in pts],
                    yerr=[[r['auc'] - r['auc_ci_low'] for _, r in pts],
                          [r['auc_ci_high'] - r['auc'] for _, r in pts]],
                    fmt='o', capsize=3, label=m)
    ax.set_xlim(-0.5, len(seeds) - 0.5)
    ax.set_xticks(range(len(seeds)))
    ax.set_xticklabels([f'seed {s}' for s in seeds])
    ax.set_ylabel('test AUC (DeLong 95% CI)')
    ax.set_title('Synthetic crops: mean teacher vs supervised', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return path


def save_results(rows: List[dict], work_dir: str, settings: dict) -> dict:
    summary = summarise(rows)
    dump_json(dict(settings=settings, rows=rows, summary=summary),
              osp.join(work_dir, 'results.json'))
    md = results_markdown(rows, summary)
    with open(osp.join(work_dir, 'results.md') + '.tmp', 'w') as f:
        f.write('# Mean teacher vs supervised on synthetic crops\n\n'
                f'Settings: `{json.dumps(settings)}`\n\n'
                'Test AUC [DeLong 95% CI]\n\n' + md + '\n')
    os.replace(osp.join(work_dir, 'results.md') + '.tmp',
               osp.join(work_dir, 'results.md'))
    plot_auc_by_seed(rows, osp.join(work_dir, 'auc_by_seed.png'))
    return summary


#: ``BatchViewAugment`` arguments the demo may set for every method.
VIEW_KEYS = ('translate', 'zoom', 'contrast', 'scale', 'brightness')


def set_views(cfg, **views):
    """Set ``BatchViewAugment`` arguments (``translate``, ``zoom``,
    ``contrast``, ``scale``, ``brightness``) in a crop-classifier config:
    the mean teacher's student / teacher views, or the supervised configs'
    batch augmentation, so every method trains on the same views."""
    unknown = sorted(set(views) - set(VIEW_KEYS))
    if unknown:
        raise ValueError(f'unknown view arguments {unknown}; expected some '
                         f'of {VIEW_KEYS}')
    if cfg.model.get('type') == 'SemiClassifier':
        aug = cfg.model['view_augment']
    else:
        aug = cfg.model.get('data_preprocessor', {}).get(
            'batch_augments', {}).get('augments')
    if not aug or aug.get('type') != 'BatchViewAugment':
        raise ValueError('config has no BatchViewAugment to set the views of')
    for k, v in views.items():
        aug[k] = int(v) if k == 'translate' else float(v)
    return cfg


def set_ema_momentum(cfg, momentum: float):
    """Set every ``MeanTeacherHook``'s momentum (1 - EMA decay, mmengine's
    convention) to ``momentum``, during the ramp-up and after it; configs
    without the hook (the supervised ones) are left as they are."""
    if not 0 < momentum < 1:
        raise ValueError(f'momentum must be in (0, 1), got {momentum}')
    for h in cfg.get('custom_hooks', []):
        if h.get('type') == 'MeanTeacherHook':
            h['momentum'] = h['rampup_momentum'] = momentum
    return cfg


def run_demo(work_dir: str, seeds: Sequence[int] = (0, 1, 2),
             counts: Optional[Dict[str, int]] = None,
             difficulty: float = 0.7, balanced_basic: bool = True,
             framing: str = 'random',
             methods: Sequence[str] = METHODS, epochs: Optional[int] = 30,
             epoch_length: Optional[int] = None, threads: int = 2,
             force: bool = False, views: Optional[Dict[str, float]] = None,
             consistency_weight: Optional[float] = None,
             consistency_on: Optional[str] = None, jobs: int = 1,
             log=print, gain: float = 1.0,
             basic_gain: Optional[float] = None,
             ema_momentum: Optional[float] = None) -> dict:
    """Generate, train and test every (seed, method); returns
    ``dict(rows=..., summary=...)``.

    ``views`` sets :class:`BatchViewAugment` arguments (see :func:`set_views`)
    in every method's config, so all methods see the same augmentation;
    ``consistency_weight`` (``w_max``) and ``consistency_on``
    (``'unlabelled'`` / ``'all'``) change the mean teacher only. ``None``
    keeps the configs' values. ``ema_momentum`` (1 - EMA decay) replaces
    the ``MeanTeacherHook`` momentum during and after the ramp-up.
    ``jobs`` runs train at once, each with
    ``threads`` torch threads.
    """
    for m in methods:
        method_config(m)  # unknown names fail before any work
    if not seeds:
        raise ValueError('at least one seed is needed')
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    work_dir = osp.abspath(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    settings = dict(counts=counts, difficulty=difficulty,
                    balanced_basic=balanced_basic, framing=framing, gain=gain,
                    basic_gain=basic_gain, ema_momentum=ema_momentum,
                    epochs=epochs,
                    epoch_length=epoch_length, views=dict(views or {}),
                    consistency_weight=consistency_weight,
                    consistency_on=consistency_on,
                    methods=list(methods),
                    seeds=list(seeds))
    # 1. data and configs for every (seed, method)
    runs = []
    for s in seeds:
        sdir = osp.join(work_dir, f'seed_{s}')
        crops = make_seed_crops(osp.join(sdir, 'crops'), counts, s,
                                difficulty, balanced_basic, framing, gain,
                                basic_gain)
        with open(osp.join(crops, 'settings.json')) as f:
            crop_settings = f.read()
        labelled = describe_labelled_crops(
            osp.join(crops, 'basic_train.json'))
        for m in methods:
            cfg = classifier_config(
                repo_path(method_config(m)), crops, epochs, epoch_length,
                roc_dir=osp.join(sdir, m, 'test'), seed=s,
                consistency_weight=consistency_weight)
            if views:
                cfg = set_views(cfg, **views)
            if consistency_on and cfg.model.get('type') == 'SemiClassifier':
                cfg.model['consistency_on'] = consistency_on
            if ema_momentum is not None:
                set_ema_momentum(cfg, ema_momentum)
            cfg_path = write_config(cfg, osp.join(sdir, 'configs', f'{m}.py'))
            # a finished run is reused only if it was trained with this very
            # config and data (changed demo options retrain it)
            stamp_text = Path(cfg_path).read_text() + \
                '\n# crops: ' + crop_settings + '\n'
            runs.append(dict(seed=s, method=m, sdir=sdir, cfg=cfg_path,
                             wd=osp.join(sdir, m), stamp_text=stamp_text,
                             labelled=labelled))

    def reusable(r):
        stamp = osp.join(r['wd'], 'demo_config.py')
        return not force and osp.isfile(_metrics_file(r)) and \
            osp.isfile(stamp) and Path(stamp).read_text() == r['stamp_text']

    def test(r):
        run_logged([python(), tool('tools/test.py'), r['cfg'],
                    best_checkpoint(r['wd']), '--work-dir',
                    osp.join(r['wd'], 'test'), '--out-metrics',
                    _metrics_file(r), '--out', _predictions_file(r)],
                   osp.join(r['sdir'], 'logs', f"{r['method']}_test.log"),
                   threads=threads)

    def train_and_test(r):
        shutil.rmtree(r['wd'], ignore_errors=True)
        wall = run_logged([python(), tool('tools/train.py'), r['cfg'],
                           '--work-dir', r['wd']],
                          osp.join(r['sdir'], 'logs',
                                   f"{r['method']}_train.log"),
                          threads=threads)
        test(r)
        atomic_write(osp.join(r['wd'], 'demo_config.py'),
                     lambda p: Path(p).write_text(r['stamp_text']))
        return wall

    # 2. train + test (``jobs`` at a time); results are rewritten after
    # every finished run, so an interrupted demo keeps what it finished
    rows: List[dict] = []
    summary: dict = {}

    def collect(r, wall):
        nonlocal summary
        with open(_metrics_file(r)) as f:
            met = r['metrics'] = strip_prefix(json.load(f))
        preds = load_predictions(_predictions_file(r))
        row = dict(seed=r['seed'], method=r['method'], auc=met['auc'],
                   auc_ci_low=met['auc_ci_low'],
                   auc_ci_high=met['auc_ci_high'],
                   sensitivity=met.get('sensitivity'),
                   specificity=met.get('specificity'),
                   accuracy=met.get('accuracy'),
                   orientation_auc=orientation_auc(preds),
                   brightness_rho=brightness_rho(preds,
                                                 _predictions_file(r)),
                   labelled=r['labelled'],
                   best_checkpoint=osp.basename(best_checkpoint(r['wd'])),
                   train_s=wall)
        rows.append(row)
        rows.sort(key=lambda x: (seeds.index(x['seed']),
                                 list(methods).index(x['method'])))
        log(f"[demo] ({len(rows)}/{len(runs)}) seed {r['seed']} "
            f"{r['method']}: AUC {row['auc']:.3f} "
            f"[{row['auc_ci_low']:.3f}, {row['auc_ci_high']:.3f}]" +
            (f', trained in {wall:.0f} s' if wall else ' (reused)'))
        summary = save_results(rows, work_dir, settings)

    todo = []
    for r in runs:
        if reusable(r):
            if not osp.isfile(_predictions_file(r)):
                test(r)  # a run from before predictions were kept
            collect(r, None)
        else:
            todo.append(r)
    if todo:
        log(f'[demo] training {len(todo)} run(s), {jobs} at a time, '
            f'{threads} thread(s) each')
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(train_and_test, r): r for r in todo}
        try:
            for fut in as_completed(futures):
                collect(futures[fut], fut.result())
        except BaseException:
            for fut in futures:  # a failed run stops the queued ones
                fut.cancel()
            raise

    # 3. one ROC figure per seed (metrics as read by collect)
    for s in seeds:
        curves, aucs = {}, {}
        for r in (r for r in runs if r['seed'] == s):
            roc = _roc_csv(osp.join(r['wd'], 'test'))
            if roc:
                curves[r['method']] = read_roc_csv(roc)
                aucs[r['method']] = r['metrics']
        if curves:
            plot_rocs(curves, aucs, osp.join(work_dir, f'seed_{s}', 'roc.png'),
                      f'Synthetic crops, seed {s}: test ROC')
    return dict(rows=rows, summary=summary)


def _metrics_file(run: dict) -> str:
    return osp.join(run['wd'], 'test', 'metrics.json')


def _predictions_file(run: dict) -> str:
    return osp.join(run['wd'], 'test', 'predictions.pkl')
