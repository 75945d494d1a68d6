"""The synthetic dataset writer: patients, views and BUSI-layout files from :mod:`.synthetic`'s renderer.

Images are written atomically; ``patients.csv`` / ``labels.csv`` are what the BUSI converter reads, and
``synthetic_meta.csv`` keeps every image's style, difficulty, cues and boxes for analysis.
"""
from __future__ import annotations

import csv
import os
import time

import cv2
import numpy as np

from .synthetic import CUE_NAMES, STYLES, render_case, sample_cues, sample_shape


def _atomic_png(path: str, arr: np.ndarray) -> None:
    tmp = path + '.tmp.png'
    if not cv2.imwrite(tmp, arr):
        raise OSError(f'could not write {path}')
    os.replace(tmp, path)


def _plan(n_images, malignant_fraction, n_normal, two_view_fraction, rng):
    """Patients and their images: list of (patient_no, pathology, n_views)."""
    n_mal = int(round(n_images * malignant_fraction))
    plan = []
    for pathology, n in (('malignant', n_mal), ('benign', n_images - n_mal),
                         ('normal', n_normal)):
        left = n
        while left > 0:
            views = 2 if (left >= 2 and rng.random() < two_view_fraction) else 1
            plan.append((pathology, views))
            left -= views
    order = rng.permutation(len(plan))
    return [(i + 1,) + plan[k] for i, k in enumerate(order)]


def make_synthetic_dataset(out_root: str, n_images: int = 300, malignant_fraction: float = 0.4,
                           n_normal: int = 0, style: str = 'a', difficulty: float = 0.5,
                           seed: int = 0, two_view_fraction: float = 0.35,
                           multi_nodule_prob: float = 0.03, caliper_prob: float = 0.3,
                           progress: bool = True, workers: int = 1) -> dict:
    """Write a BUSI-layout synthetic dataset and return a summary.

    ``n_images`` benign+malignant images (``malignant_fraction`` of them malignant) plus
    ``n_normal`` normal images (empty mask). About ``two_view_fraction`` of the patients get
    two views (``-l``/``-r``, same nodule cues and shape, other position/speckle/overlays);
    single-view images end in ``-s`` (like BUS-BRA). Files::

        out_root/{benign,malignant,normal}/<P><pid>-<view>.png   (+ _mask.png, _mask_1.png)
        out_root/patients.csv        image,patient   (read by the BUSI converter)
        out_root/labels.csv          image,pathology,patient
        out_root/synthetic_meta.csv  per image: style, difficulty, cues, boxes (for analysis)

    The same arguments always give byte-identical images (per-patient seeded generators),
    whatever ``workers`` (processes; 0 = min(4, cpus)) is.
    """
    if style not in STYLES:
        raise ValueError(f'unknown style {style!r} (choose from {", ".join(STYLES)})')
    if not 0 <= difficulty <= 1:
        raise ValueError('difficulty must be in [0, 1]')
    if n_images < 0 or n_normal < 0 or not 0 <= malignant_fraction <= 1:
        raise ValueError('n_images/n_normal must be >= 0 and malignant_fraction in [0, 1]')
    t0 = time.perf_counter()
    style_code = ord(style)
    plan = _plan(n_images, malignant_fraction, n_normal, two_view_fraction,
                 np.random.default_rng([seed, style_code, 0]))
    for sub in ('benign', 'malignant', 'normal'):
        if any(p[1] == sub for p in plan):
            os.makedirs(os.path.join(out_root, sub), exist_ok=True)
    rows, meta_rows = [], []
    total = sum(p[2] for p in plan)
    bar = None
    if progress and total >= 200:
        from .converters.common import Progress
        bar = Progress(total, label='synthesising')
    jobs = [dict(out_root=out_root, pid=pid, pathology=pathology, views=views, seed=seed,
                 style=style, difficulty=difficulty, multi_nodule_prob=multi_nodule_prob,
                 caliper_prob=caliper_prob) for pid, pathology, views in plan]
    if workers <= 0:
        workers = min(4, os.cpu_count() or 1)
    if workers == 1 or len(jobs) < 32:
        results = map(_render_patient, jobs)
        pool = None
    else:
        from multiprocessing import get_context
        pool = get_context('fork').Pool(workers)
        results = pool.imap(_render_patient, jobs, chunksize=8)
    try:
        for patient_rows in results:
            for row, meta in patient_rows:
                rows.append(row)
                meta_rows.append(meta)
                if bar:
                    bar.update()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if bar:
        bar.close()
    rows.sort()
    meta_rows.sort(key=lambda r: r['image'])
    _write_csv(os.path.join(out_root, 'patients.csv'), ['image', 'patient'],
               [(r[0], r[2]) for r in rows])
    _write_csv(os.path.join(out_root, 'labels.csv'), ['image', 'pathology', 'patient'], rows)
    _write_csv(os.path.join(out_root, 'synthetic_meta.csv'), list(meta_rows[0].keys())
               if meta_rows else ['image'], [list(m.values()) for m in meta_rows])
    secs = time.perf_counter() - t0
    counts = {p: sum(r[1] == p for r in rows) for p in ('benign', 'malignant', 'normal')}
    return {'root': out_root, 'images': len(rows), 'patients': len(plan), **counts,
            'style': style, 'difficulty': difficulty, 'seed': seed, 'seconds': round(secs, 2),
            'images_per_s': round(len(rows) / max(secs, 1e-9), 1)}


def _render_patient(job: dict):
    """Render and write all views of one patient; returns ``[(csv row, meta row), ...]``."""
    st = STYLES[job['style']]
    style_code = ord(job['style'])
    seed, pid, pathology = job['seed'], job['pid'], job['pathology']
    prng = np.random.default_rng([seed, style_code, 1, pid])
    cues, shapes = [], []
    if pathology != 'normal':
        n_nod = 2 if prng.random() < job['multi_nodule_prob'] else 1
        for _ in range(n_nod):
            c = sample_cues(prng, pathology == 'malignant', job['difficulty'])
            cues.append(c)
            shapes.append(sample_shape(prng, c))
    view_names = ['l', 'r'] if job['views'] == 2 else ['s']
    patient = f'{job["style"].upper()}{pid:04d}'
    out = []
    for vi, vname in enumerate(view_names):
        vrng = np.random.default_rng([seed, style_code, 2, pid, vi])
        scale = 1.0 if vi == 0 else float(vrng.uniform(0.8, 1.2))
        case = render_case(vrng, pathology, st, cues, shapes, view_scale=scale,
                           caliper_prob=job['caliper_prob'], case_no=pid)
        name = f'{patient}-{vname}'
        rel = f'{pathology}/{name}.png'
        _atomic_png(os.path.join(job['out_root'], rel), case.image)
        mask_list = case.masks or [np.zeros_like(case.image)]   # normal: empty mask
        for k, m in enumerate(mask_list):
            suffix = '_mask' if k == 0 else f'_mask_{k}'
            _atomic_png(os.path.join(job['out_root'], pathology, name + suffix + '.png'), m)
        meta = {'image': rel, 'pathology': pathology, 'patient': patient, 'style': job['style'],
                'difficulty': job['difficulty'], 'width': case.image.shape[1],
                'height': case.image.shape[0],
                'boxes': ';'.join(' '.join(map(str, b)) for b in case.boxes),
                'calipers': int(case.meta['calipers'])}
        for n in CUE_NAMES:
            meta[n] = round(getattr(cues[0], n), 4) if cues else ''
        out.append(((rel, pathology, patient), meta))
    return out


def _write_csv(path, header, rows):
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
        wr = csv.writer(f)
        wr.writerow(header)
        wr.writerows(rows)
    os.replace(tmp, path)
