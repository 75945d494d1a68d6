"""Generic hospital exports.

``generic``: an image folder, a mask folder and a labels CSV.

* labels CSV columns (header names case-insensitive): ``image`` (path relative to the image
  folder; also accepted: ``file_name``/``filename``), ``pathology`` (``benign|malignant|normal``;
  also ``label``) and optionally ``patient`` (``patient_id``); without a patient column every
  image is its own patient (image name without extension);
* masks are found with ``mask_pattern``, a glob in the mask folder where ``{stem}`` is the
  image name without extension and ``{name}`` the file name, default ``"{stem}_mask*.png"``
  (one box per mask file, or per region with ``per_region``).

``boxes-csv``: a CSV of boxes without masks, one row per box: ``image, x1, y1, x2, y2,
pathology[, patient]`` in pixels, ``x2/y2`` exclusive (box width = ``x2 - x1``). Several rows of
one image give several boxes; a row with empty coordinates lists an image without a box
(normal). All rows of one image must agree on pathology and patient.

Every image file in the image folder must appear in the CSV (otherwise it would be dropped
silently): an unlisted image is an error in strict mode.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List

from .common import ImageTask, ProblemLog, is_image_file, looks_like_image, normalise_pathology
from .csv_utils import pick_column, read_csv_rows
from .masks import DEFAULT_MIN_REGION_AREA

IMAGE_COLS = ('image', 'file_name', 'filename', 'img', 'path')
PATHOLOGY_COLS = ('pathology', 'label', 'class', 'diagnosis')
PATIENT_COLS = ('patient', 'patient_id', 'case', 'subject')


def _rel_to_root(root: str, path: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, '/')


def _scan_images(root: str, image_dir: str, problems: ProblemLog,
                 exclude: tuple = ()) -> Dict[str, str]:
    """``{path relative to image_dir: abs path}`` of all image files (recursive)."""
    found = {}
    excl = {os.path.abspath(e) for e in exclude}
    for dirpath, dirnames, filenames in os.walk(image_dir):
        # our own outputs (annotations/, converted_images/) may live inside the root
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.') and
                             d not in ('annotations', 'converted_images') and
                             os.path.abspath(os.path.join(dirpath, d)) not in excl)
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            if is_image_file(f):
                found[os.path.relpath(p, image_dir).replace(os.sep, '/')] = p
            elif not f.lower().endswith('.csv'):
                problems.info(_rel_to_root(root, p), 'not an image file; ignored')
    return found


def _unlisted(problems: ProblemLog, rel: str, path: str, csv_name: str) -> None:
    """An image-named file without a CSV row: an error, unless it is no image at all."""
    if looks_like_image(path):
        problems.error(rel, f'image has no row in {csv_name} (pathology unknown)')
    else:
        problems.warning(rel, 'not an image (named like one, but its content is no known image '
                              f'format; it has no row in {csv_name} either); ignored')


def _mask_hint(mask_dir: str, masks: str, sub: str, name: str, mask_pattern: str,
               pattern: str) -> str:
    """Where the masks of one image were looked for, and the option that changes it."""
    where = '/'.join(p for p in (masks.rstrip('/'), sub, pattern) if p)
    hint = f'no file matched {where} (--mask-pattern "{mask_pattern}")'
    if mask_pattern != '{name}' and os.path.isfile(os.path.join(mask_dir, sub, name)):
        hint += (f'; {masks.rstrip("/")}/{"/".join(p for p in (sub, name) if p)} exists: masks '
                 'named like their images need --mask-pattern "{name}"')
    elif mask_pattern != '{name}':
        hint += '; masks named like their images need --mask-pattern "{name}"'
    return hint


def collect_generic(root: str, problems: ProblemLog, images: str = 'images',
                    masks: str = 'masks', labels: str = 'labels.csv',
                    mask_pattern: str = '{stem}_mask*.png', include_normal: bool = False,
                    per_region: bool = False,
                    min_region_area: int = DEFAULT_MIN_REGION_AREA) -> List[ImageTask]:
    root = os.path.abspath(root)
    image_dir = os.path.join(root, images)
    mask_dir = os.path.join(root, masks)
    for d, name in ((image_dir, images), (mask_dir, masks)):
        if not os.path.isdir(d):
            problems.error(name + '/', 'folder not found')
    rows = read_csv_rows(os.path.join(root, labels), labels, problems)
    if rows is None or problems.errors():
        return []
    if not rows:  # a header alone (or nothing): say so, not that the columns are missing
        problems.error(labels, 'no rows: the CSV lists no image (one row per image under its header)')
        return []
    icol = pick_column(rows, IMAGE_COLS)
    lcol = pick_column(rows, PATHOLOGY_COLS)
    pcol = pick_column(rows, PATIENT_COLS)
    if icol is None or lcol is None:
        problems.error(labels, 'needs an "image" and a "pathology" column')
        return []
    same_dir = os.path.abspath(mask_dir) == os.path.abspath(image_dir)
    available = _scan_images(root, image_dir, problems,
                             exclude=() if same_dir else (mask_dir,))
    mask_files = set()
    tasks, listed = [], set()
    n_normal = 0
    for row in rows:
        img = row[icol].replace('\\', '/')
        where = f'{labels} line {row["_line"]}'
        if img in listed:
            problems.error(labels, f'line {row["_line"]}: image {img} listed twice')
            continue
        listed.add(img)
        rel = _rel_to_root(root, os.path.join(image_dir, img))
        if img not in available:
            problems.error(rel, f'listed in {where} but the image file is missing')
            continue
        pathology = normalise_pathology(row[lcol])
        if pathology is None:
            problems.error(rel, f'unknown pathology label "{row[lcol]}" ({where})')
            continue
        if pathology == 'normal' and not include_normal:
            n_normal += 1
            continue
        name = os.path.basename(img)
        stem = os.path.splitext(name)[0]
        sub = os.path.dirname(img)
        pattern = mask_pattern.format(stem=glob.escape(stem), name=glob.escape(name))
        mlist = sorted(glob.glob(os.path.join(mask_dir, glob.escape(sub), pattern)))
        mlist = [m for m in mlist if os.path.abspath(m) != os.path.abspath(available[img])]
        mask_files.update(os.path.abspath(m) for m in mlist)
        patient = row.get(pcol, '') if pcol else ''
        tasks.append(ImageTask(
            path=available[img], rel=rel, pathology=pathology, patient_id=patient or stem,
            masks=mlist, expect_lesion=pathology != 'normal', per_region=per_region,
            min_region_area=min_region_area,
            mask_hint=_mask_hint(mask_dir, masks, sub, name, mask_pattern,
                                 mask_pattern.format(stem=stem, name=name))))
    for img, p in available.items():
        if img not in listed and (not same_dir or os.path.abspath(p) not in mask_files):
            _unlisted(problems, _rel_to_root(root, p), p, labels)
    if n_normal:
        problems.info(labels, f'{n_normal} normal image(s) excluded (use --include-normal)')
    return tasks


def collect_boxes_csv(root: str, problems: ProblemLog, images: str = '.',
                      boxes: str = 'boxes.csv', include_normal: bool = False) -> List[ImageTask]:
    root = os.path.abspath(root)
    image_dir = os.path.join(root, images)
    if not os.path.isdir(image_dir):
        problems.error(images + '/', 'folder not found')
    rows = read_csv_rows(os.path.join(root, boxes), boxes, problems)
    if rows is None or problems.errors():
        return []
    if not rows:  # a header alone (or nothing): say so, not that the columns are missing
        problems.error(boxes, 'no rows: the CSV lists no image (one row per image under its header)')
        return []
    icol = pick_column(rows, IMAGE_COLS)
    lcol = pick_column(rows, PATHOLOGY_COLS)
    pcol = pick_column(rows, PATIENT_COLS)
    coords = ('x1', 'y1', 'x2', 'y2')
    missing = [c for c in coords if c not in rows[0]]
    if icol is None or lcol is None or missing:
        problems.error(boxes, 'needs columns image, x1, y1, x2, y2, pathology[, patient]')
        return []
    available = _scan_images(root, image_dir, problems)
    per_image: Dict[str, dict] = {}
    bad = set()
    for row in rows:
        img = row[icol].replace('\\', '/')
        where = f'{boxes} line {row["_line"]}'
        rel = _rel_to_root(root, os.path.join(image_dir, img))
        pathology = normalise_pathology(row[lcol])
        if pathology is None:
            problems.error(rel, f'unknown pathology label "{row[lcol]}" ({where})')
            bad.add(img)
            continue
        patient = (row.get(pcol, '') if pcol else '') or os.path.splitext(os.path.basename(img))[0]
        rec = per_image.setdefault(img, {'pathology': pathology, 'patient': patient,
                                         'boxes': [], 'rel': rel})
        if rec['pathology'] != pathology or rec['patient'] != patient:
            problems.error(rel, f'rows disagree on pathology/patient ({where})')
            bad.add(img)
            continue
        vals = [row[c] for c in coords]
        if not any(vals):
            continue  # image listed without a box
        try:
            x1, y1, x2, y2 = (float(v) for v in vals)
        except ValueError:
            problems.error(rel, f'non-numeric box coordinates {vals} ({where})')
            bad.add(img)
            continue
        if x2 <= x1 or y2 <= y1:
            problems.error(rel, f'box x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g} has x2<=x1 or '
                                f'y2<=y1 ({where})')
            bad.add(img)
            continue
        rec['boxes'].append([x1, y1, x2 - x1, y2 - y1])
    tasks = []
    n_normal = 0
    for img, rec in per_image.items():
        if img in bad:
            continue
        if img not in available:
            problems.error(rec['rel'], f'listed in {boxes} but the image file is missing')
            continue
        if rec['pathology'] == 'normal' and not include_normal:
            n_normal += 1
            continue
        if rec['pathology'] != 'normal' and not rec['boxes']:
            problems.error(rec['rel'], f'{rec["pathology"]} image has no box in {boxes}')
            continue
        tasks.append(ImageTask(path=available[img], rel=rec['rel'], pathology=rec['pathology'],
                               patient_id=rec['patient'], boxes=rec['boxes'],
                               expect_lesion=rec['pathology'] != 'normal'))
    for img, p in available.items():
        if img not in per_image:
            _unlisted(problems, _rel_to_root(root, p), p, boxes)
    if n_normal:
        problems.info(boxes, f'{n_normal} normal image(s) excluded (use --include-normal)')
    return tasks
