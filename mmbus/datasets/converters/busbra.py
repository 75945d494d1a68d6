"""BUS-BRA (Gomez-Flores et al., Med. Phys. 2024): ``ROOT/Images/bus_XXXX-{l,r,s}.png``,
``ROOT/Masks/mask_XXXX-{l,r,s}.png``, ``ROOT/bus_data.csv`` (ID, Case, Histology, Pathology,
BIRADS, Device, Width, Height, Side, BBOX) and the fold files ``5-fold-cv.csv`` /
``10-fold-cv.csv`` (column ``kFold``).

Known quirks handled here (see the dataset's PROVENANCE notes):

* ``Width``/``Height`` in the CSV are wrong for a few images: the decoded PNG size is used
  (reported as ``info``);
* the box is taken from the mask; the CSV ``BBOX [x, y, w, h]`` is only cross-checked and a
  disagreement of more than ``bbox_tolerance`` pixels is a ``warning`` (bus_0845-s);
* the patient id is ``Case``: the -l/-r images of one case are two views of the same
  lesion and must stay in one split.

Extra image keys: ``birads``, ``histology``, ``device``, ``side``, ``fold5``, ``fold10``.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

from .common import ImageResult, ImageTask, ProblemLog, is_image_file, normalise_pathology
from .csv_utils import read_csv_rows
from .masks import DEFAULT_MIN_REGION_AREA

META_CSV = 'bus_data.csv'
FOLD_CSVS = {'fold5': '5-fold-cv.csv', 'fold10': '10-fold-cv.csv'}


def _mask_name(image_id: str) -> str:
    return ('mask_' + image_id[4:] if image_id.startswith('bus_') else image_id + '_mask') + '.png'


def collect_busbra(root: str, problems: ProblemLog, per_region: bool = False,
                   min_region_area: int = DEFAULT_MIN_REGION_AREA, images_dir: str = 'Images',
                   masks_dir: str = 'Masks') -> List[ImageTask]:
    root = os.path.abspath(root)
    rows = read_csv_rows(os.path.join(root, META_CSV), META_CSV, problems)
    img_dir = os.path.join(root, images_dir)
    msk_dir = os.path.join(root, masks_dir)
    for d, name in ((img_dir, images_dir), (msk_dir, masks_dir)):
        if not os.path.isdir(d):
            problems.error(name + '/', 'folder not found')
    if rows is None or problems.errors():
        return []
    required = ('id', 'case', 'pathology')
    missing = [c for c in required if c not in rows[0]]
    if missing:
        problems.error(META_CSV, f'missing column(s) {", ".join(missing)}')
        return []

    folds: Dict[str, Dict[str, int]] = {}
    for key, fname in FOLD_CSVS.items():
        if os.path.isfile(os.path.join(root, fname)):
            frows = read_csv_rows(os.path.join(root, fname), fname, problems) or []
            folds[key] = {r['id']: int(r['kfold']) for r in frows
                          if r.get('kfold', '').strip().isdigit()}

    image_files = set()
    for f in sorted(os.listdir(img_dir)):
        if os.path.isfile(os.path.join(img_dir, f)):
            if is_image_file(f):
                image_files.add(f)
            else:
                problems.info(f'{images_dir}/{f}', 'not an image file; ignored')
    for f in sorted(os.listdir(msk_dir)):
        if os.path.isfile(os.path.join(msk_dir, f)) and not is_image_file(f):
            problems.info(f'{masks_dir}/{f}', 'not an image file; ignored')

    tasks, seen = [], set()
    for row in rows:
        image_id = row['id']
        fname = image_id + '.png'
        rel = f'{images_dir}/{fname}'
        if image_id in seen:
            problems.error(META_CSV, f'line {row["_line"]}: duplicate ID {image_id}')
            continue
        seen.add(image_id)
        if fname not in image_files:
            problems.error(rel, f'listed in {META_CSV} (line {row["_line"]}) but the image '
                                'file is missing')
            continue
        pathology = normalise_pathology(row['pathology'])
        if pathology is None:
            problems.error(rel, f'unknown pathology label "{row["pathology"]}" in {META_CSV} '
                                f'line {row["_line"]}')
            continue
        if not row['case']:
            problems.error(rel, f'empty Case (patient) in {META_CSV} line {row["_line"]}')
            continue
        mpath = os.path.join(msk_dir, _mask_name(image_id))
        extra = {}
        for src, dst in (('birads', 'birads'), ('histology', 'histology'),
                         ('device', 'device'), ('side', 'side')):
            if row.get(src):
                extra[dst] = row[src]
        for key, fmap in folds.items():
            if image_id in fmap:
                extra[key] = fmap[image_id]
        # checked after decoding, removed before writing
        extra['_csv_bbox'] = row.get('bbox', '')
        extra['_csv_size'] = (row.get('width', ''), row.get('height', ''))
        tasks.append(ImageTask(
            path=os.path.join(img_dir, fname), rel=rel, pathology=pathology,
            patient_id=row['case'],
            masks=[mpath] if os.path.isfile(mpath) else [],
            expect_lesion=pathology != 'normal', per_region=per_region,
            min_region_area=min_region_area, extra=extra,
            mask_hint=f'looked for {masks_dir}/{_mask_name(image_id)}; --masks names another '
                      'mask folder'))
    listed = {r['id'] + '.png' for r in rows}
    for f in sorted(image_files - listed):
        problems.error(f'{images_dir}/{f}', f'image has no row in {META_CSV} (pathology unknown)')
    return tasks


def check_busbra(results: Sequence[ImageResult], problems: ProblemLog,
                 bbox_tolerance: float = 2.0) -> None:
    """Cross-check decoded sizes and mask boxes against ``bus_data.csv`` (reports only)."""
    for r in results:
        extra = r.task.extra
        csv_bbox = extra.pop('_csv_bbox', '')
        w_csv, h_csv = extra.pop('_csv_size', ('', ''))
        if not r.ok:
            continue
        if w_csv and h_csv and (str(r.width), str(r.height)) != (w_csv, h_csv):
            problems.info(r.task.rel, f'{META_CSV} says {w_csv}x{h_csv} but the PNG is '
                                      f'{r.width}x{r.height}; PNG size used')
        if csv_bbox and len(r.boxes) == 1:
            try:
                cb = [float(v) for v in json.loads(csv_bbox)]
            except (ValueError, TypeError):
                problems.warning(r.task.rel, f'unparsable BBOX "{csv_bbox}" in {META_CSV}')
                continue
            mb = r.boxes[0]
            if len(cb) != 4 or max(abs(a - b) for a, b in zip(cb, mb)) > bbox_tolerance:
                problems.warning(r.task.rel, f'{META_CSV} BBOX {cb} disagrees with the mask '
                                             f'box {mb} (x,y,w,h); mask box used')
