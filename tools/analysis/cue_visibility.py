"""How much of each malignancy cue of the synthetic generator survives the crop and the recogniser's input size.

For every cue of :data:`mmbus.datasets.synthetic.CUE_NAMES` (and ``all``, the generator's own class model at a
given difficulty) it renders hospital-A images with one nodule in which only that cue depends on the class: the
cue is drawn from the class-conditional model with a per-cue separation of ``--separation`` standard deviations,
every other cue from the class-neutral one (so it varies, as it does in real images, but says nothing). The
nodule is cropped as the study crops it (box plus margin), letterboxed to each ``--sizes`` input and given to the
recogniser of the shipped configs (``MTConvNet`` + linear head, the supervised model's batch views), trained on
``--train`` crops; its test AUC is set beside the ideal observer's AUC of the latent cue, ``Phi(sep / sqrt 2)``.
A cue whose AUC stays near 0.5 is not visible to the recogniser at that size.

    python tools/analysis/cue_visibility.py --out-dir work_dirs/cue_visibility [--sizes 32 64] [--cues all spiculation]

Writes ``cue_visibility.{json,md,png}``; progress on the console.
"""
import argparse
import math
import os
import os.path as osp
import sys
import time

import numpy as np


def parse_args(argv=None):
    from mmbus.datasets.synthetic import CUE_NAMES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out-dir', required=True)
    p.add_argument('--cues', nargs='+', default=['all', *CUE_NAMES],
                   help=f'cues to measure: all (the generator at --difficulty) and any of {", ".join(CUE_NAMES)}')
    p.add_argument('--sizes', nargs='+', type=int, default=[32, 64], help='recogniser input sizes, px')
    p.add_argument('--train', type=int, default=1500, help='training crops per cue')
    p.add_argument('--test', type=int, default=500, help='test crops per cue')
    p.add_argument('--separation', type=float, default=2.0,
                   help='class separation of the one informative cue, in SDs of its latent variable')
    p.add_argument('--difficulty', type=float, default=0.5, help='generator difficulty of the "all" condition')
    p.add_argument('--margin', type=float, default=10., help='crop margin around the box, px (as the study)')
    p.add_argument('--relative-margin', type=float, default=0.,
                   help='extra crop margin, fraction of the box\'s longer side')
    p.add_argument('--iters', type=int, default=400, help='training iterations (batch 64)')
    p.add_argument('--widen-factor', type=float, default=0.25)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    bad = [c for c in args.cues if c != 'all' and c not in CUE_NAMES]
    if bad:
        p.error(f'unknown cue(s) {bad}; known: all, {", ".join(CUE_NAMES)}')
    if any(s < 8 for s in args.sizes):
        p.error(f'--sizes must be >= 8 px, got {args.sizes}')
    if args.train < 20 or args.test < 20:
        p.error('--train and --test need at least 20 crops each')
    return args


def ideal_auc(cue: str, separation: float, difficulty: float) -> float:
    """AUC of the ideal observer of the latent cue(s): Phi(D / sqrt 2)."""
    from scipy.stats import norm

    from mmbus.datasets.synthetic import cue_separation
    d = cue_separation(difficulty) if cue == 'all' else separation
    return float(norm.cdf(d / math.sqrt(2.0)))


def draw_cues(rng, cue: str, malignant: bool, separation: float, difficulty: float):
    from mmbus.datasets.synthetic import CUE_NAMES, NoduleCues, sample_cues
    if cue == 'all':
        return sample_cues(rng, malignant, difficulty)
    z = rng.normal(0.0, 1.0, size=len(CUE_NAMES))
    z[CUE_NAMES.index(cue)] += separation / 2.0 * (1.0 if malignant else -1.0)
    t = 1.0 / (1.0 + np.exp(-1.6 * z))    # the generator's link (sample_cues)
    return NoduleCues(**{n: float(v) for n, v in zip(CUE_NAMES, t)})


def render_crops(rng, cue: str, n: int, args):
    """``n`` nodule crops (list of uint8 HxW) and their labels (1 = malignant), balanced."""
    from mmbus.apis.boxes import crop_nodule, xywh_to_xyxy
    from mmbus.datasets.synthetic import STYLES, render_case, sample_shape
    crops, labels = [], []
    while len(crops) < n:
        malignant = len(crops) % 2 == 1
        c = draw_cues(rng, cue, malignant, args.separation, args.difficulty)
        case = render_case(rng, 'malignant' if malignant else 'benign', STYLES['a'], [c],
                           [sample_shape(rng, c)], caliper_prob=0.0)
        if not case.boxes or not case.boxes[0]:
            continue       # the nodule fell outside the field of view
        crop, _ = crop_nodule(case.image, xywh_to_xyxy(case.boxes[0]), args.margin, args.relative_margin)
        crops.append(crop)
        labels.append(int(malignant))
    return crops, np.asarray(labels)


def letterbox(crops, size):
    from mmbus.datasets.transforms.letterbox import LetterboxResize
    t = LetterboxResize(size)
    return np.stack([t.transform({'img': c})['img'] for c in crops])[:, None].astype(np.float32)


def train_and_score(x_tr, y_tr, x_te, y_te, args, seed):
    """Train the shipped supervised recogniser on (x_tr, y_tr); test AUC on (x_te, y_te)."""
    import torch
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    from sklearn.metrics import roc_auc_score

    import mmbus.registry  # noqa: F401  (registers MTConvNet, BatchViewAugment)
    torch.manual_seed(seed)
    w = args.widen_factor
    model = MODELS.build(dict(
        type='ImageClassifier',
        data_preprocessor=dict(
            type='ClsDataPreprocessor', mean=[127.5], std=[127.5], to_rgb=False, num_classes=2,
            batch_augments=dict(augments=dict(type='BatchViewAugment', flip_prob=0.5, brightness=0.2,
                                              noise_std=0.15, translate=2))),
        backbone=dict(type='MTConvNet', in_channels=1, widen_factor=w, dropout=0.5),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=int(128 * w),
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0))))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.iters)
    gen = np.random.default_rng(seed)
    xt, bs = torch.from_numpy(x_tr), 64
    model.train()
    for _ in range(args.iters):
        idx = gen.choice(len(x_tr), bs, replace=len(x_tr) < bs)
        samples = [DataSample().set_gt_label(int(y_tr[i])) for i in idx]
        data = model.data_preprocessor({'inputs': list(xt[idx]), 'data_samples': samples}, training=True)
        loss = sum(v for k, v in model(**data, mode='loss').items() if 'loss' in k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor({'inputs': list(torch.from_numpy(x_te))}, training=False)
        scores = torch.softmax(model(data['inputs'], mode='tensor'), dim=1)[:, 1].numpy()
    return float(roc_auc_score(y_te, scores))


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    rows, t0 = [], time.time()
    n_jobs = len(args.cues) * len(args.sizes)
    for ci, cue in enumerate(args.cues):
        rng = np.random.default_rng([args.seed, ci])
        tr, y_tr = render_crops(rng, cue, args.train, args)
        te, y_te = render_crops(rng, cue, args.test, args)
        side = np.median([max(c.shape) for c in tr])
        for si, size in enumerate(args.sizes):
            auc = train_and_score(letterbox(tr, size), y_tr, letterbox(te, size), y_te, args, args.seed)
            rows.append(dict(cue=cue, size=size, auc=round(auc, 4),
                             ideal_auc=round(ideal_auc(cue, args.separation, args.difficulty), 4),
                             median_crop_px=int(side), train=args.train, test=args.test))
            done = ci * len(args.sizes) + si + 1
            eta = (time.time() - t0) / done * (n_jobs - done)
            print(f'[cue_visibility] {done}/{n_jobs} {cue:>14s} @ {size:3d} px: AUC {auc:.3f} '
                  f'(ideal {rows[-1]["ideal_auc"]:.3f}), ETA {eta / 60:.1f} min', flush=True)
    result = dict(settings={k: v for k, v in vars(args).items() if k != 'out_dir'}, rows=rows,
                  seconds=round(time.time() - t0, 1))
    write_outputs(result, args.out_dir)
    return result


def write_outputs(result, out_dir):
    from mmbus.utils.io import atomic_write_json, atomic_write_text
    from mmbus.utils.markdown import md_table
    atomic_write_json(result, osp.join(out_dir, 'cue_visibility.json'), indent=1)
    sizes = sorted({r['size'] for r in result['rows']})
    cues = list(dict.fromkeys(r['cue'] for r in result['rows']))
    by = {(r['cue'], r['size']): r for r in result['rows']}
    s = result['settings']
    lines = ['# Cue visibility: recogniser test AUC with one informative cue', '',
             f'{s["train"]} training / {s["test"]} test crops per cue, margin {s["margin"]} px '
             f'(+ {s["relative_margin"]} of the longer side), widen factor {s["widen_factor"]}, {s["iters"]} '
             f'iterations; one cue at {s["separation"]} SD, "all": the generator at difficulty {s["difficulty"]}.',
             '', md_table(['cue', 'ideal'] + [f'{z} px' for z in sizes],
                          [[c, f'{by[(c, sizes[0])]["ideal_auc"]:.3f}'] +
                           [f'{by[(c, z)]["auc"]:.3f}' if (c, z) in by else '' for z in sizes] for c in cues])]
    atomic_write_text('\n'.join(lines) + '\n', osp.join(out_dir, 'cue_visibility.md'))
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.2 * len(cues) + 2, 3.5))
    width = 0.8 / (len(sizes) + 1)
    for k, z in enumerate(sizes):
        ax.bar(np.arange(len(cues)) + k * width, [by.get((c, z), {}).get('auc', np.nan) for c in cues],
               width, label=f'recogniser, {z} px')
    ax.bar(np.arange(len(cues)) + len(sizes) * width, [by[(c, sizes[0])]['ideal_auc'] for c in cues], width,
           color='grey', label='ideal observer')
    ax.axhline(0.5, color='k', lw=0.8, ls=':')
    ax.set_xticks(np.arange(len(cues)) + width * len(sizes) / 2, cues, rotation=30, ha='right')
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel('test AUC')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, 'cue_visibility.png'), dpi=120)
    plt.close(fig)


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
