#!/usr/bin/env python
"""Do the classifier's class-activation maps point at the lesion? Grad-CAM on every crop of a split, measured
against the lesion masks.

    python tools/analysis/cam_eval.py CONFIG CHECKPOINT CROPS_DIR --split test \\
        --masks-root DATA_ROOT --out-dir outputs/cam_eval [--num-examples 16]

CONFIG/CHECKPOINT: the classifier (a SemiClassifier's teacher is used, or a plain/exported ImageClassifier).
CROPS_DIR: the crops dataset of tools/extract_crops.py (``<split>.json`` + ``<split>/*.png``), *not* a letterboxed
copy (tools/analysis/letterbox_crops.py): the crop must still be the window ``bbox`` of its source image.

The mask window of a crop: each record of ``<split>.json`` carries the source image (``file_name``, relative to the
dataset root) and ``bbox``, the crop window after margin and clipping (``crop == image[y1:y2, x1:x2]``), so the
same window is cut out of the lesion mask of that image. Masks are looked for under MASKS_ROOT (default: the
crops JSON's ``metainfo.data_root``), in this order:

* BUS-BRA: ``Masks/mask_XXXX-l.png`` for ``Images/bus_XXXX-l.png`` (also directly under MASKS_ROOT);
* BUSI and masks beside their images: ``<stem>_mask.png`` next to the image's path (also under ``Masks/`` and
  directly under MASKS_ROOT).

Measures (see mmbus/apis/explain.py): pointing-game hit rate with a 95 % Wilson interval, and the mean share of
the map's mass inside the mask. Two baselines show what a map that knows nothing scores on these crops, which are
cut around the nodule: the pointing game of the crop centre, and the energy of a uniform map (= the mask's area
fraction in the crop). A crop whose window holds no lesion pixel (a detector box beside the lesion) is counted
apart, not measured.

Writes OUT_DIR/cam_eval.json (summary + one record per crop), OUT_DIR/cam_eval.md (a Markdown table row) and
OUT_DIR/cam_examples.png (overlays of NUM_EXAMPLES crops spread evenly over the split: mask outline in green, map
peak as a white cross, caption hit/miss, energy, p(malignant), true class).
"""
import argparse
import json
import math
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmbus.apis.crop_extraction import read_image  # noqa: E402
from mmbus.classes import CLASSES  # noqa: E402
from mmbus.apis.explain import (DEFAULT_TOLERANCE, cam_for_crops, cam_peak, energy_inside,  # noqa: E402
                                overlay, pointing_game)
from mmbus.evaluation.operating_points import wilson_interval  # noqa: E402
from mmbus.utils.io import atomic_imwrite, atomic_write_json, atomic_write_text, make_dirs  # noqa: E402

TILE = 160      # px, side of one example in the grid
CAPTION = 22    # px, caption strip under each example


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='classifier config (SemiClassifier or ImageClassifier)')
    p.add_argument('checkpoint', help='classifier checkpoint')
    p.add_argument('crops_dir', help='crops dataset root (holds <split>.json and <split>/)')
    p.add_argument('--split', default='test')
    p.add_argument('--masks-root', default=None,
                   help="folder the masks are found under (default: the crops JSON's metainfo.data_root)")
    p.add_argument('--out-dir', required=True)
    p.add_argument('--num-examples', type=int, default=16, help='overlays in the example grid (0: no grid)')
    p.add_argument('--target-class', default='1', choices=('0', '1', 'pred', 'true'),
                   help='class whose evidence is mapped: 1 = malignant (default), 0 = benign, pred = the '
                   "predicted class, true = the crop's true class")
    p.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE,
                   help=f'pointing-game tolerance in crop pixels (default {DEFAULT_TOLERANCE:g})')
    p.add_argument('--layer', default=None,
                   help='target layer, dotted name in the classifier (default: last conv of the backbone)')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--device', default='cpu')
    return p.parse_args(argv)


# ----------------------------------------------------------------------------
# crops index and masks
# ----------------------------------------------------------------------------
def load_index(crops_dir, split):
    path = osp.join(crops_dir, f'{split}.json')
    if not osp.isfile(path):
        sys.exit(f'error: crops index not found: {path} (is {crops_dir} a crops dataset with a "{split}" split?)')
    try:
        with open(path) as f:
            index = json.load(f)
    except json.JSONDecodeError as e:
        sys.exit(f'error: {path} is not valid JSON: {e}')
    records = index.get('data_list') if isinstance(index, dict) else None
    if not isinstance(records, list):
        sys.exit(f'error: {path} has no "data_list" (not a crops index of tools/extract_crops.py)')
    for k, r in enumerate(records):
        missing = [key for key in ('img_path', 'file_name', 'bbox') if key not in r]
        if missing:
            sys.exit(f'error: {path}: record {k} lacks {", ".join(missing)} (written by an older crop '
                     'extractor? re-extract the crops)')
    return path, index.get('metainfo') or {}, records


def mask_candidates(masks_root, file_name):
    """Where the mask of ``file_name`` (dataset-relative image path) may be, most specific first."""
    rel_dir, base = osp.split(file_name)
    stem, ext = osp.splitext(base)
    dirs = []
    if rel_dir:
        parts = rel_dir.split('/')
        dirs.append('/'.join('Masks' if p == 'Images' else p for p in parts))
        dirs.append(rel_dir)
    dirs += ['Masks', '']
    names = []
    if stem.startswith('bus_'):
        names.append('mask_' + stem[4:] + '.png')        # BUS-BRA
    names += [stem + '_mask.png', stem + '_mask' + ext]  # BUSI / masks beside their images
    # (never the image's own path: with MASKS_ROOT = the data root that is the image itself)
    return [osp.join(masks_root, d, n) for d in dict.fromkeys(dirs) for n in dict.fromkeys(names)]


def find_mask(masks_root, file_name):
    tried = mask_candidates(masks_root, file_name)
    for path in tried:
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'no lesion mask for {file_name} under {masks_root} (tried: '
                            f'{", ".join(osp.relpath(p, masks_root) for p in tried)}); --masks-root names the folder')


def mask_window(mask_path, bbox, crop_shape, image_path=None):
    """``mask[y1:y2, x1:x2]`` as a bool array, checked against the crop and the source image."""
    from PIL import Image

    from mmbus.datasets.converters.imread import read_mask
    try:
        mask = read_mask(mask_path)
    except ValueError as e:
        raise ValueError(f'mask {mask_path}: {e}') from None
    if image_path is not None and osp.isfile(image_path):
        with Image.open(image_path) as im:  # header only: catches a mask folder of another dataset
            w, h = im.size
        if mask.shape != (h, w):
            raise ValueError(f'mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} px but its image '
                             f'{image_path} is {w}x{h} px')
    x1, y1, x2, y2 = [int(v) for v in bbox]
    if not (0 <= x1 < x2 <= mask.shape[1] and 0 <= y1 < y2 <= mask.shape[0]):
        raise ValueError(f'crop box {list(bbox)} does not fit mask {mask_path} '
                         f'({mask.shape[1]}x{mask.shape[0]} px)')
    if tuple(crop_shape[:2]) != (y2 - y1, x2 - x1):
        raise ValueError(f'crop is {crop_shape[1]}x{crop_shape[0]} px but its box {list(bbox)} is '
                         f'{x2 - x1}x{y2 - y1} px: the crops were resized after extraction (a letterboxed '
                         'copy?); use the crops dataset written by tools/extract_crops.py')
    return mask[y1:y2, x1:x2]


def centre_hit(mask, tolerance):
    """Pointing game of a map peaked at the crop centre (the baseline of crops cut around the nodule)."""
    h, w = mask.shape
    cam = np.zeros((h, w))
    cam[h // 2, w // 2] = 1.0
    return pointing_game(cam, mask, tolerance)


# ----------------------------------------------------------------------------
# summary and outputs
# ----------------------------------------------------------------------------
def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else float('nan'), len(values)


def _rate(flags):
    n, k = len(flags), int(sum(flags))
    lo, hi = wilson_interval(k, n)
    return dict(hits=k, total=n, rate=k / n if n else float('nan'), ci95=[lo, hi])


def summarise(rows):
    measured = [r for r in rows if r['status'] == 'ok']
    out = dict(num_crops=len(rows), num_measured=len(measured),
               num_empty_mask_window=sum(r['status'] == 'empty_mask_window' for r in rows),
               num_flat_cam=sum(r['peak'] is None for r in measured))
    out['pointing_game'] = _rate([r['hit'] for r in measured])
    out['energy_inside'], out['energy_inside_n'] = _mean([r['energy_inside'] for r in measured])
    out['baseline_centre_pointing_game'] = _rate([r['centre_hit'] for r in measured])
    out['baseline_uniform_energy'], _ = _mean([r['mask_fraction'] for r in measured])
    out['by_true_class'] = {}
    for label, name in enumerate(CLASSES):
        sub = [r for r in measured if r['true_label'] == label]
        energy, _ = _mean([r['energy_inside'] for r in sub])
        out['by_true_class'][name] = dict(pointing_game=_rate([r['hit'] for r in sub]), energy_inside=energy)
    return out


def _no_nan(obj):
    """NaN (an empty class, no measured crop) as JSON null: NaN is not valid JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def _fmt(x, digits=3):
    return 'n/a' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def markdown(summary, split, target):
    pg, base = summary['pointing_game'], summary['baseline_centre_pointing_game']
    header = ('| split | target class | crops measured | pointing game | 95 % CI | energy inside | '
              'centre baseline | uniform baseline |\n|---|---|---|---|---|---|---|---|')
    row = (f"| {split} | {target} | {summary['num_measured']}/{summary['num_crops']} | "
           f"{_fmt(pg['rate'])} ({pg['hits']}/{pg['total']}) | "
           f"[{_fmt(pg['ci95'][0])}, {_fmt(pg['ci95'][1])}] | {_fmt(summary['energy_inside'])} | "
           f"{_fmt(base['rate'])} | {_fmt(summary['baseline_uniform_energy'])} |")
    return header, row


def tile(crop, cam, mask, row):
    """One example: overlay scaled into TILE x TILE (aspect kept), mask outline, peak, caption; BGR uint8."""
    import cv2
    rgb = overlay(crop, cam)
    h, w = rgb.shape[:2]
    s = TILE / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    img = cv2.cvtColor(cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2BGR)
    m = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, (0, 255, 0), 1)
    if row['peak'] is not None:
        py, px = row['peak']
        cv2.drawMarker(img, (int(px * s), int(py * s)), (255, 255, 255), cv2.MARKER_CROSS, 12, 2)
    canvas = np.zeros((TILE + CAPTION, TILE, 3), np.uint8)
    top, left = (TILE - nh) // 2, (TILE - nw) // 2
    canvas[top:top + nh, left:left + nw] = img
    true = {0: 'B', 1: 'M'}.get(row['true_label'], '?')
    text = f"{'hit' if row['hit'] else 'miss'} e={_fmt(row['energy_inside'], 2)} p={row['p_malignant']:.2f} {true}"
    cv2.putText(canvas, text, (3, TILE + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (0, 255, 0) if row['hit'] else (0, 0, 255), 1)
    return canvas


def grid(tiles, cols=4):
    cols = min(cols, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    th, tw = tiles[0].shape[:2]
    out = np.full((rows * (th + 4), cols * (tw + 4), 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        out[r * (th + 4):r * (th + 4) + th, c * (tw + 4):c * (tw + 4) + tw] = t
    return out


# ----------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    for path, what in ((args.config, 'classifier config'), (args.checkpoint, 'classifier checkpoint')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} not found: {path}')
    index_path, meta, records = load_index(args.crops_dir, args.split)
    if not records:
        sys.exit(f'error: {index_path} lists no crop')
    masks_root = args.masks_root or meta.get('data_root')
    if not masks_root or not osp.isdir(masks_root):
        sys.exit(f'error: masks folder not found: {masks_root!r} (pass --masks-root)')
    data_root = meta.get('data_root')
    try:  # every mask found before the model is loaded: a wrong --masks-root fails at once
        mask_paths = [find_mask(masks_root, r['file_name']) for r in records]
    except FileNotFoundError as e:
        sys.exit(f'error: {e}')

    from mmengine.registry import DefaultScope

    from mmbus.apis.export import load_plain_classifier
    from mmbus.utils.checkpoint import CheckpointError
    try:
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model, _ = load_plain_classifier(args.config, args.checkpoint, args.device)
    except (FileNotFoundError, ValueError, CheckpointError) as e:
        sys.exit(f'error: {e}')

    from mmengine.utils import ProgressBar
    print(f'[cam_eval] {len(records)} crops of {index_path}; masks under {masks_root}; '
          f'target class {args.target_class}')
    make_dirs(args.out_dir)
    n_ex = max(0, min(args.num_examples, len(records)))
    examples = set(np.linspace(0, len(records) - 1, n_ex).round().astype(int).tolist()) if n_ex else set()
    rows, tiles = [], []
    progress = ProgressBar(len(records))
    for start in range(0, len(records), args.batch_size):
        chunk = records[start:start + args.batch_size]
        crops, windows = [], []
        for r, mask_path in zip(chunk, mask_paths[start:start + args.batch_size]):
            crop_path = osp.join(args.crops_dir, r['img_path'])
            try:
                crop = read_image(crop_path, 'crop')
                image_path = osp.join(data_root, r['file_name']) if data_root else None
                window = mask_window(mask_path, r['bbox'], crop.shape, image_path)
            except (FileNotFoundError, ValueError) as e:
                sys.exit(f'\nerror: {e}')
            crops.append(crop)
            windows.append(window)
        if args.target_class == 'pred':
            target = None
        elif args.target_class == 'true':
            target = [int(r.get('true_label', r.get('gt_label', -1))) for r in chunk]
            if min(target) < 0:
                sys.exit(f'\nerror: {index_path}: a crop has no true label; use --target-class 0/1/pred')
        else:
            target = int(args.target_class)
        cams, scores = cam_for_crops(model, crops, target_class=target, layer=args.layer,
                                     batch_size=args.batch_size, return_scores=True)
        for k, (r, crop, cam, mask) in enumerate(zip(chunk, crops, cams, windows)):
            row = dict(img_path=r['img_path'], file_name=r['file_name'], bbox=r['bbox'],
                       true_label=int(r.get('true_label', r.get('gt_label', -1))),
                       p_malignant=round(float(scores[k][1]), 6), mask_fraction=float(mask.mean()))
            if not mask.any():
                row.update(status='empty_mask_window', hit=None, energy_inside=None, centre_hit=None,
                           peak=cam_peak(cam))
            else:
                row.update(status='ok', hit=pointing_game(cam, mask, args.tolerance),
                           energy_inside=energy_inside(cam, mask), centre_hit=centre_hit(mask, args.tolerance),
                           peak=cam_peak(cam))
            if start + k in examples:
                tiles.append(tile(crop, cam, mask, row))
            rows.append(row)
            progress.update()
    print()

    summary = summarise(rows)
    target_name = {'0': CLASSES[0], '1': CLASSES[1]}.get(args.target_class, args.target_class)
    header, line = markdown(summary, args.split, target_name)
    result = dict(config=args.config, checkpoint=args.checkpoint, crops_index=index_path, masks_root=masks_root,
                  split=args.split, target_class=target_name, tolerance_px=args.tolerance,
                  layer=args.layer or 'last conv of the backbone', summary=summary, crops=rows)
    json_path = osp.join(args.out_dir, 'cam_eval.json')
    md_path = osp.join(args.out_dir, 'cam_eval.md')
    atomic_write_json(_no_nan(result), json_path, indent=1)
    atomic_write_text(header + '\n' + line + '\n', md_path)
    written = [json_path, md_path]
    if tiles:
        png_path = osp.join(args.out_dir, 'cam_examples.png')
        atomic_imwrite(grid(tiles), png_path)
        written.append(png_path)
    pg = summary['pointing_game']
    print(f"pointing game {_fmt(pg['rate'])} ({pg['hits']}/{pg['total']}, 95 % CI "
          f"{_fmt(pg['ci95'][0])}-{_fmt(pg['ci95'][1])}; centre baseline "
          f"{_fmt(summary['baseline_centre_pointing_game']['rate'])}), energy inside "
          f"{_fmt(summary['energy_inside'])} (uniform baseline {_fmt(summary['baseline_uniform_energy'])}); "
          f"{summary['num_empty_mask_window']} crop(s) without lesion pixels not measured")
    print(header + '\n' + line)
    print('written: ' + ', '.join(written))


if __name__ == '__main__':
    main()
