"""One entry point for every format: scan -> decode/check/hash/fingerprint (process pool) ->
COCO -> (optionally) leakage-safe split with the duplicate and re-crop guard -> JSON files
(written atomically, with the umask's permissions). The CLI
``tools/dataset_converters/bus_to_coco.py`` is a thin argparse layer over
:func:`convert_and_split`.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from .busbra import check_busbra, collect_busbra
from .busi import collect_busi
from .coco_writer import (build_coco, ordered_results, write_converted_copies,
                          write_json_atomic)
from .common import (DEFAULT_MIN_REGION_AREA, ConversionError, ProblemLog, is_image_file,
                     run_tasks)
from .duplicates import DEFAULT_THRESHOLD
from .generic import collect_boxes_csv, collect_generic
from .neardup import DEFAULT_MIN_SPECKLE
from .splits import SPLITS, split_dataset, summary_markdown, write_split_outputs

FORMATS = ('busi', 'busbra', 'generic', 'boxes-csv')


@dataclass
class ConversionOutput:
    coco: dict
    problems: ProblemLog
    n_found: int          # images the scan found (before faulty ones were skipped)
    n_skipped: int        # faulty images skipped (lenient mode only)
    seconds: float
    fingerprints: Optional[dict] = None   # image id -> re-crop fingerprint (guard on)
    mask_counts: Optional[dict] = None    # masks with several regions, specks left out


def convert_dataset(fmt: str, root: str, *, lenient: bool = False,
                    one_box_per_region: bool = False,
                    min_region_area: int = DEFAULT_MIN_REGION_AREA,
                    include_normal: bool = False, source: Optional[str] = None,
                    out_dir: Optional[str] = None, workers: int = 0, progress: bool = True,
                    format_options: Optional[Dict[str, str]] = None,
                    recrop_guard: bool = True) -> ConversionOutput:
    """Convert a dataset folder to a COCO dict (nothing is written except 8-bit copies of
    16-bit images, which need ``out_dir``).

    Strict mode (default) raises :class:`ConversionError` listing *every* error; lenient mode
    skips faulty images and reports them in ``problems``. ``format_options`` are passed to
    the format's collector (e.g. ``images``, ``masks``, ``labels``, ``mask_pattern`` for
    ``generic``; ``images``, ``boxes`` for ``boxes-csv``). ``recrop_guard`` computes the
    fingerprints of the re-crop guard (``fingerprints`` of the output).
    """
    if fmt not in FORMATS:
        raise ValueError(f'unknown format {fmt!r} (choose from {", ".join(FORMATS)})')
    if not os.path.isdir(root):
        raise FileNotFoundError(f'dataset root {root} is not a folder')
    t0 = time.perf_counter()
    root = os.path.abspath(root)
    opts = dict(format_options or {})
    problems = ProblemLog()
    if fmt == 'busi':
        tasks = collect_busi(root, problems, include_normal, one_box_per_region, min_region_area,
                             skip_dirs=(out_dir,) if out_dir else ())
    elif fmt == 'busbra':
        tasks = collect_busbra(root, problems, one_box_per_region, min_region_area, **opts)
    elif fmt == 'generic':
        tasks = collect_generic(root, problems, include_normal=include_normal,
                                per_region=one_box_per_region,
                                min_region_area=min_region_area, **opts)
    else:
        tasks = collect_boxes_csv(root, problems, include_normal=include_normal, **opts)
    # images the scan already rejected (unknown pathology, no label row, ...) count as skipped
    rejected = {p.path for p in problems.errors() if is_image_file(p.path)}
    for t in tasks:
        t.fingerprint = recrop_guard
    results = run_tasks(tasks, workers=workers, progress=progress)
    for r in results:
        problems.extend(r.problems)
    if fmt == 'busbra':
        check_busbra(results, problems)
    if problems.errors() and not lenient:
        raise ConversionError(problems)
    good = [r for r in results if r.ok]
    if not good:
        problems.error(root, 'no image could be converted')
        raise ConversionError(problems, lenient=lenient)
    if any(r.gray is not None for r in good):
        if out_dir is None:
            raise ValueError('16-bit images need an out_dir for their 8-bit copies')
        write_converted_copies(good, root, out_dir, problems)
    coco = build_coco(good, source or os.path.basename(root.rstrip('/')),
                      info={'format': fmt, 'root': root})
    fps = {i: r.fingerprint for i, r in enumerate(ordered_results(good), start=1)} \
        if recrop_guard else None
    counts = {'masks_with_several_regions': 0, 'mask_specks_left_out': 0}
    for r in good:
        counts['masks_with_several_regions'] += r.mask_counts.get('several_regions', 0)
        counts['mask_specks_left_out'] += r.mask_counts.get('specks', 0)
        r.fingerprint = None
    return ConversionOutput(coco, problems, len(tasks) + len(rejected),
                            len(results) - len(good) + len(rejected), time.perf_counter() - t0,
                            fps, counts)


def format_problems(problems: ProblemLog, max_info: int = 20) -> str:
    """Every error and warning, and the first ``max_info`` info notes."""
    lines = []
    for lvl in ('error', 'warning'):
        lines += [str(p) for p in problems.of_level(lvl)]
    infos = problems.of_level('info')
    lines += [str(p) for p in infos[:max_info]]
    if len(infos) > max_info:
        lines.append(f'... and {len(infos) - max_info} more info notes (see '
                     'conversion_report.json)')
    return '\n'.join(lines)


def report_duplicates(result, problems: ProblemLog) -> None:
    """One note per group of copies (``info``); ``warning`` for a group with conflicting
    labels (named with each image's label and what the policy did) and for copies whose
    boxes disagree."""
    where = result.assignment
    for g in result.dup_groups:
        names = g['file_names']
        splits = sorted({where.get(i, '?') for i in g['image_ids']})
        split = splits[0] if len(splits) == 1 else '/'.join(splits)
        kinds = '/'.join(g['kinds'])
        if g['label_conflict']:
            labels = ', '.join(f'{n} ({p})' for n, p in zip(names, g['pathologies']))
            action = {'keep': f'kept together in {split}',
                      'train-only': f'kept together in {split} (training only)',
                      'exclude': 'left out of every split'}[result.label_conflicts]
            if split == 'excluded':
                action = 'left out of every split'
            problems.warning(names[0], f'copies ({kinds}) with CONFLICTING pathology labels: '
                                       f'{labels}; {action} (--label-conflicts '
                                       f'{result.label_conflicts})')
        else:
            others = ', '.join(names[1:])
            problems.info(names[0], f'{len(names) - 1} cop{"y" if len(names) == 2 else "ies"} '
                                    f'({kinds}): {others}; kept together in {split}')
        for c in g['mask_conflicts']:
            a, b = c['file_names']
            problems.warning(a, f'same scan as {b} but the boxes disagree (best IoU '
                                f'{c["iou"]:.2f}): {c["boxes"]} here (in {b}\'s pixels) vs '
                                f'{c["other_boxes"]} there')


def _fingerprint_file(path: str):
    from .common import dhash, pixel_digest, read_image
    from .neardup import fingerprint
    try:
        gray = read_image(path).gray
    except ValueError as exc:
        return str(exc), None
    return (dhash(gray), pixel_digest(gray)), fingerprint(gray)


def add_missing_hashes(coco: dict, root: str, problems: ProblemLog, fingerprints: bool = False,
                       workers: int = 0) -> Optional[dict]:
    """Compute ``dhash``/``pixel_sha1`` for images of a COCO file that lack them (a COCO file
    not written by our converter). With ``fingerprints`` every image is read (in ``workers``
    processes) and the re-crop fingerprints are returned (image id -> fingerprint)."""
    todo = [im for im in coco['images']
            if fingerprints or not (im.get('dhash') and im.get('pixel_sha1'))]
    paths = [os.path.join(root, im['file_name']) for im in todo]
    workers = workers if workers > 0 else min(4, os.cpu_count() or 1)
    if workers > 1 and len(paths) >= 64 and sys.platform != 'win32':
        from multiprocessing import get_context
        with get_context('fork').Pool(workers) as pool:
            out = pool.map(_fingerprint_file, paths, chunksize=16)
    else:
        out = [_fingerprint_file(p) for p in paths]
    fps = {}
    for im, (hashes, fp) in zip(todo, out):
        if isinstance(hashes, str):
            problems.warning(im['file_name'], f'{hashes}; no duplicate check for this image')
            continue
        if not (im.get('dhash') and im.get('pixel_sha1')):
            im['dhash'], im['pixel_sha1'] = hashes
        fps[im['id']] = fp
    return fps if fingerprints else None


def _workers(workers: int) -> int:
    return workers if workers > 0 else min(4, os.cpu_count() or 1)


def split_coco_file(ann_file: str, out_dir: str, *, root: Optional[str] = None,
                    verbose: bool = True, recrop_guard: bool = True, workers: int = 0,
                    **split_kwargs) -> dict:
    """Split an existing COCO file (ours, or any COCO whose images carry ``pathology`` and
    ``patient_id``) into the four split files.

    With ``root`` (the folder ``file_name`` paths are relative to) the images are read:
    missing hashes are computed and, with ``recrop_guard``, the re-crop guard runs. Without
    ``root`` only exact/near duplicates of already hashed images are found (a note says so).
    ``split_kwargs`` go to :func:`split_dataset`."""
    from .coco_writer import load_coco
    coco = load_coco(ann_file)
    problems = ProblemLog()
    for im in coco['images']:
        for key in ('pathology', 'patient_id'):
            if key not in im:
                problems.error(im.get('file_name', str(im.get('id'))), f'image has no {key!r}')
        if im.get('pathology') not in ('benign', 'malignant', 'normal', None):
            problems.error(im['file_name'], f'unknown pathology label "{im["pathology"]}"')
    if problems.errors():
        raise ConversionError(problems)
    for im in coco['images']:   # a previous split's marks must not leak into the new one
        im.pop('split', None)
        im.pop('label_hidden', None)
    fps = None
    if root is not None:
        fps = add_missing_hashes(coco, root, problems, fingerprints=recrop_guard,
                                 workers=workers)
    elif recrop_guard:
        problems.info(ann_file, 'no --root: re-cropped copies are not looked for (only '
                                'exact and dHash duplicates)')
    res = split_dataset(coco, fingerprints=fps, workers=_workers(workers), **split_kwargs)
    report_duplicates(res, problems)
    title = f'{coco["images"][0].get("source", "dataset")} ({os.path.basename(ann_file)})'
    summary = write_split_outputs(coco, res, out_dir, title)
    if verbose:
        if len(problems):
            print(format_problems(problems), file=sys.stderr)
        print(summary_markdown(summary, title))
        print(f'[mmbus] split: {summary["all"]["total"]} images of {ann_file} written to '
              f'{os.path.join(out_dir, "annotations")} (mode {summary["mode"]}, seed '
              f'{summary["seed"]}, {summary["patients_spanning_splits"]} patients spanning '
              f'splits, {summary["duplicate_groups"]} groups of copies)')
    return summary


def select_images(coco: dict, where: Sequence[str] = (), where_not: Sequence[str] = ()) -> tuple:
    """``coco`` restricted to the images whose keys match every ``KEY=REGEX`` of ``where`` and none of
    ``where_not`` (``re.search`` on the value as text; e.g. ``device=Toshiba|U-Systems``: a scanner held out
    as an external test set). Returns ``(coco, number of images left out)``. A key that no image carries,
    or a selection that keeps no image, is an error naming what the images do carry."""
    import re
    rules = []
    for spec, keep in [(w, True) for w in where] + [(w, False) for w in where_not]:
        if '=' not in spec:
            raise ValueError(f'image selection {spec!r}: expected KEY=REGEX (e.g. device=Toshiba)')
        key, pattern = spec.split('=', 1)
        if not any(key in im for im in coco['images']):
            known = sorted({k for im in coco['images'] for k in im})
            raise ValueError(f'image selection {spec!r}: no image carries {key!r} (keys: {", ".join(known)})')
        rules.append((key, re.compile(pattern), keep))
    if not rules:
        return coco, 0

    def chosen(im):
        return all(bool(rx.search(str(im.get(key, '')))) == keep for key, rx, keep in rules)

    images = [im for im in coco['images'] if chosen(im)]
    if not images:
        values = {key: sorted({str(im.get(key)) for im in coco['images']}) for key, _, _ in rules}
        raise ValueError(f'image selection {list(where)} / not {list(where_not)} keeps no image (values: {values})')
    ids = {im['id'] for im in images}
    out = dict(coco, images=images, annotations=[a for a in coco.get('annotations', []) if a['image_id'] in ids])
    return out, len(coco['images']) - len(images)


def refuse_mixed_conversions(ann_dir: str, split: bool, external_test: bool) -> None:
    """Refuse to write into ``ann_dir`` when it holds annotation files of an earlier conversion that this
    one would not replace: an external test set converted over a split folder would leave the old
    ``basic_train.json`` beside a new ``test.json`` holding some of the same images."""
    names = ('all',) + SPLITS
    writes = ('test',) if external_test else names if split else ('all',)
    left = [f'{n}.json' for n in names if n not in writes and os.path.isfile(os.path.join(ann_dir, f'{n}.json'))]
    if left:
        what = 'an external test set, test.json alone' if external_test else 'all.json without a split'
        raise ValueError(f'{ann_dir} holds {", ".join(left)} from an earlier conversion, which this one ({what}) '
                         'would not replace: the folder would mix two conversions, and images of the old files '
                         'could be in the new ones. Give this conversion its own --out-dir, or remove those '
                         'files first; nothing was written.')


def warn_empty_splits(result, n_images: int, problems: ProblemLog) -> None:
    """A warning for each split the split was asked to fill and left without an image (a small dataset, a
    small share): a detector cannot be validated or tested on an empty file (``tools/train.py`` refuses an
    empty validation split), so the console says so now rather than at training."""
    if result.mode == 'external_test':
        return
    got = Counter(result.assignment.values())
    for s in SPLITS:
        asked = sum(result.targets.get(s, {}).values())
        if asked > 0 and not got[s]:
            problems.warning(f'{s}.json', f'no image: {n_images} images in {len(result.groups)} patient groups '
                             f'gave {s} none (asked for about {asked:.1f}; whole patients go to one split); '
                             'training cannot validate or test on an empty split: use more images, a larger '
                             'share (--ratios) or a count (--split counts --counts)')


def convert_and_split(fmt: str, root: str, out_dir: str, *, split: bool = True,
                      ratios: Optional[Dict[str, float]] = None,
                      counts: Optional[Dict[str, Optional[float]]] = None, seed: int = 0,
                      balanced: Sequence[str] = (), external_test: bool = False,
                      test_fold: Optional[int] = None, fold_key: str = 'fold5',
                      dup_threshold: int = DEFAULT_THRESHOLD, recrop_guard: bool = True,
                      min_speckle: float = DEFAULT_MIN_SPECKLE, label_conflicts: str = 'keep',
                      where: Sequence[str] = (), where_not: Sequence[str] = (),
                      verbose: bool = True, **convert_kwargs) -> dict:
    """Convert ``root`` and write ``out_dir/annotations/``:

    * ``external_test``: only ``test.json`` (whole dataset) + summary;
    * ``split`` (default): ``all.json`` and the four split files + summary;
    * otherwise: ``all.json`` only (no duplicate search).

    ``recrop_guard`` looks for re-cropped copies too (``min_speckle``: its threshold);
    ``label_conflicts`` decides where a group of copies with different labels goes (see
    :func:`split_dataset`). ``conversion_report.json`` lists every problem found. Returns the
    split summary dict (or a small summary without splits). Raises :class:`ConversionError`
    in strict mode; files already in ``out_dir/annotations`` are then left as they were.
    ``where`` / ``where_not`` keep only some images (see :func:`select_images`) before splitting.
    """
    t0 = time.perf_counter()
    ann_dir = os.path.join(out_dir, 'annotations')
    refuse_mixed_conversions(ann_dir, split, external_test)
    guard = recrop_guard and (split or external_test)
    try:
        out = convert_dataset(fmt, root, out_dir=out_dir, recrop_guard=guard, **convert_kwargs)
    except ConversionError as exc:
        if os.path.isdir(ann_dir) and any(f.endswith('.json') for f in os.listdir(ann_dir)):
            exc.keep_note(ann_dir)
        raise
    coco, n_selected_out = select_images(out.coco, where, where_not)
    title = f'{coco["images"][0]["source"]} ({fmt})'
    t1 = time.perf_counter()
    if split or external_test:
        res = split_dataset(coco, ratios=ratios, counts=counts, seed=seed,
                            dup_threshold=dup_threshold, balanced=balanced,
                            external_test=external_test, test_fold=test_fold,
                            fold_key=fold_key, fingerprints=out.fingerprints,
                            min_speckle=min_speckle, label_conflicts=label_conflicts,
                            workers=_workers(convert_kwargs.get('workers', 0)))
        warn_empty_splits(res, len(coco['images']), out.problems)
        report_duplicates(res, out.problems)
        summary = write_split_outputs(coco, res, out_dir, title)
    else:
        write_json_atomic(coco, os.path.join(ann_dir, 'all.json'))
        summary = {'mode': 'no_split', 'all': {'total': len(coco['images'])}}
    summary['conversion'] = {'format': fmt, 'root': os.path.abspath(root),
                             'images_found': out.n_found, 'images_written': len(coco['images']),
                             'images_skipped': out.n_skipped, 'boxes': len(coco['annotations']),
                             'images_selected_out': n_selected_out,
                             'selection': dict(where=list(where), where_not=list(where_not)),
                             **out.mask_counts, 'recrop_guard': guard,
                             'seconds_convert': round(out.seconds, 2),
                             'seconds_split': round(time.perf_counter() - t1, 2),
                             'seconds': round(time.perf_counter() - t0, 2),
                             'problems': out.problems.counts()}
    write_json_atomic({'summary': summary['conversion'], 'problems': out.problems.to_list()},
                      os.path.join(ann_dir, 'conversion_report.json'), indent=1)
    if 'splits' in summary:   # same summary file, now with the conversion counts
        write_json_atomic(summary, os.path.join(ann_dir, 'split_summary.json'), indent=1)
    if verbose:
        if len(out.problems):
            print(format_problems(out.problems), file=sys.stderr)
        if 'splits' in summary:
            print(summary_markdown(summary, title))
        c = summary['conversion']
        dups = f', {summary["duplicate_groups"]} groups of copies' if 'splits' in summary \
            else ''
        print(f'[mmbus] {fmt}: {c["images_written"]} images, {c["boxes"]} boxes written to '
              f'{ann_dir} ({c["images_skipped"]} skipped, {c["problems"]["error"]} errors, '
              f'{c["problems"]["warning"]} warnings{dups}) in {c["seconds"]:.1f} s')
    return summary
