"""BUSI layout: ``ROOT/{benign,malignant,normal}/NAME.png`` with ``NAME_mask.png``,
``NAME_mask_1.png``, ... (Al-Dhabyani et al. 2020; also the layout of our synthetic data).

* one box per mask file (the extent of its foreground), or with ``per_region`` one box per
  8-connected region of each mask;
* ``normal`` images carry no box and are excluded unless ``include_normal``;
* BUSI has no patient ids: the patient id is the image name without extension (e.g.
  ``"benign (1)"``), so every image is its own patient (two images with the same name in
  different folders share a patient id, i.e. stay together: the safe side). When
  ``ROOT/patients.csv`` (columns
  ``image, patient``; ``image`` = path relative to ROOT, file name or name without extension)
  exists, its patient ids are used instead (the synthetic generator writes one).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional

from .common import (PATHOLOGIES, ImageTask, ProblemLog, is_image_file,
                     normalise_pathology)
from .masks import DEFAULT_MIN_REGION_AREA
from .csv_utils import pick_column, read_csv_rows

_MASK_RE = re.compile(r'^(?P<base>.*)_mask(?:_(?P<idx>\d+))?$', re.IGNORECASE)
#: files at the dataset root that belong to the dataset but are not images
ROOT_METADATA = ('patients.csv', 'labels.csv', 'synthetic_meta.csv', 'readme.md', 'readme.txt',
                 'license.txt', 'license')


def _mask_sort_key(path: str):
    m = _MASK_RE.match(os.path.splitext(os.path.basename(path))[0])
    return int(m.group('idx')) + 1 if m and m.group('idx') else 0


def read_patient_map(root: str, problems: ProblemLog,
                     name: str = 'patients.csv') -> Optional[Dict[str, str]]:
    """``{key: patient}`` from ``ROOT/patients.csv`` (keys: relative path, file name and stem
    of each listed image), or ``None`` when the file is absent."""
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        return None
    rows = read_csv_rows(path, name, problems)
    if rows is None:
        return None
    icol = pick_column(rows, ('image', 'file_name', 'filename', 'id'))
    pcol = pick_column(rows, ('patient', 'patient_id', 'case'))
    if icol is None or pcol is None:
        problems.error(name, 'needs columns "image" and "patient"')
        return None
    mapping = {}
    for row in rows:
        img, pat = row[icol], row[pcol]
        if not img or not pat:
            problems.warning(name, f'line {row["_line"]}: empty image or patient; row ignored')
            continue
        for key in (img, os.path.basename(img), os.path.splitext(os.path.basename(img))[0]):
            mapping.setdefault(key.replace('\\', '/'), pat)
    return mapping


def _note_outside_link(rel: str, path: str, real_root: str, problems: ProblemLog) -> None:
    """A symbolic link that leads out of the dataset root is followed, with a warning naming its target:
    the converted dataset then depends on files elsewhere."""
    if not os.path.islink(path):
        return
    target = os.path.realpath(path)
    if os.path.commonpath([target, real_root]) != real_root:
        problems.warning(rel, f'symbolic link to {target}, outside the dataset root; read from there')


def collect_busi(root: str, problems: ProblemLog, include_normal: bool = False,
                 per_region: bool = False, min_region_area: int = DEFAULT_MIN_REGION_AREA,
                 skip_dirs: tuple = ()) -> List[ImageTask]:
    """Scan a BUSI-layout folder and return one task per image to convert.

    Folder-level faults (unknown pathology folder, orphan masks, stray files) go to
    ``problems``; per-image faults are found later by the worker.
    """
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    patients = read_patient_map(root, problems)
    tasks: List[ImageTask] = []
    skip = {os.path.abspath(d) for d in skip_dirs}
    n_normal_skipped = 0
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if os.path.isfile(path):
            if entry.lower() not in ROOT_METADATA:
                problems.info(entry, 'file at the dataset root is not part of the BUSI layout;'
                                     ' ignored')
            continue
        if entry.startswith('.') or os.path.abspath(path) in skip or entry in (
                'annotations', 'converted_images'):
            continue
        pathology = normalise_pathology(entry)
        _note_outside_link(entry + '/', path, real_root, problems)
        files = sorted(os.listdir(path))
        image_files = [f for f in files if is_image_file(f)]
        if pathology is None or entry.lower() not in PATHOLOGIES:
            if not image_files:
                problems.info(entry + '/', 'folder without images; ignored')
                continue
            for f in image_files:
                if not _MASK_RE.match(os.path.splitext(f)[0]):
                    problems.error(f'{entry}/{f}',
                                   f'unknown pathology label "{entry}" (folder name must be one '
                                   f'of {", ".join(PATHOLOGIES)})')
            continue
        masks: Dict[str, List[str]] = {}
        images = []
        for f in files:
            fpath = os.path.join(path, f)
            if os.path.isdir(fpath):
                problems.info(f'{entry}/{f}/', 'sub-folder inside a pathology folder; ignored')
                continue
            if not is_image_file(f):
                problems.info(f'{entry}/{f}', 'not an image file; ignored')
                continue
            if os.path.islink(fpath):
                _note_outside_link(f'{entry}/{f}', fpath, real_root, problems)
            m = _MASK_RE.match(os.path.splitext(f)[0])
            if m:
                masks.setdefault(m.group('base'), []).append(fpath)
            else:
                images.append(f)
        stems = {os.path.splitext(f)[0] for f in images}
        for base, mlist in sorted(masks.items()):
            if base not in stems:
                for mp in mlist:
                    problems.warning(f'{entry}/{os.path.basename(mp)}',
                                     f'mask without image (no {base}.png); ignored')
        for f in images:
            stem = os.path.splitext(f)[0]
            rel = f'{entry}/{f}'
            if pathology == 'normal' and not include_normal:
                n_normal_skipped += 1
                continue
            patient = stem
            if patients is not None:
                patient = patients.get(rel, patients.get(f, patients.get(stem)))
                if patient is None:
                    problems.warning(rel, 'not listed in patients.csv; image name used as '
                                          'patient id')
                    patient = stem
            tasks.append(ImageTask(
                path=os.path.join(root, rel), rel=rel, pathology=pathology,
                patient_id=patient,
                masks=sorted(masks.get(stem, []), key=_mask_sort_key),
                expect_lesion=pathology != 'normal', per_region=per_region,
                min_region_area=min_region_area,
                mask_hint=f'looked for {entry}/{stem}_mask.png and {entry}/{stem}_mask_<n>.png'))
    if n_normal_skipped:
        problems.info('normal/', f'{n_normal_skipped} normal image(s) excluded '
                                 '(use --include-normal to keep them, without boxes)')
    return tasks
