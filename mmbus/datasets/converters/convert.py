"""One entry point for every format: scan -> decode/check/hash (process pool) -> COCO ->
(optionally) leakage-safe split -> atomic JSON files. The CLI
``tools/dataset_converters/bus_to_coco.py`` is a thin argparse layer over
:func:`convert_and_split`.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from .busbra import check_busbra, collect_busbra
from .busi import collect_busi
from .coco_writer import build_coco, write_converted_copies, write_json_atomic
from .common import ConversionError, ProblemLog, is_image_file, run_tasks
from .duplicates import DEFAULT_THRESHOLD
from .generic import collect_boxes_csv, collect_generic
from .splits import split_dataset, summary_markdown, write_split_outputs

FORMATS = ('busi', 'busbra', 'generic', 'boxes-csv')


@dataclass
class ConversionOutput:
    coco: dict
    problems: ProblemLog
    n_found: int          # images the scan found (before faulty ones were skipped)
    n_skipped: int        # faulty images skipped (lenient mode only)
    seconds: float


def convert_dataset(fmt: str, root: str, *, lenient: bool = False,
                    one_box_per_region: bool = False, min_region_area: int = 1,
                    include_normal: bool = False, source: Optional[str] = None,
                    out_dir: Optional[str] = None, workers: int = 0, progress: bool = True,
                    format_options: Optional[Dict[str, str]] = None) -> ConversionOutput:
    """Convert a dataset folder to a COCO dict (nothing is written except 8-bit copies of
    16-bit images, which need ``out_dir``).

    Strict mode (default) raises :class:`ConversionError` listing *every* error; lenient mode
    skips faulty images and reports them in ``problems``. ``format_options`` are passed to
    the format's collector (e.g. ``images``, ``masks``, ``labels``, ``mask_pattern`` for
    ``generic``; ``images``, ``boxes`` for ``boxes-csv``).
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
        raise ConversionError(problems)
    if any(r.gray is not None for r in good):
        if out_dir is None:
            raise ValueError('16-bit images need an out_dir for their 8-bit copies')
        write_converted_copies(good, root, out_dir, problems)
    coco = build_coco(good, source or os.path.basename(root.rstrip('/')),
                      info={'format': fmt, 'root': root})
    return ConversionOutput(coco, problems, len(tasks) + len(rejected),
                            len(results) - len(good) + len(rejected), time.perf_counter() - t0)


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


def report_duplicates(duplicates, problems: ProblemLog) -> None:
    """Duplicates become ``info`` notes, duplicates with conflicting labels ``warning``s."""
    for d in duplicates:
        level = 'warning' if d['conflict'] else 'info'
        msg = (f'{d["kind"]} duplicate of {d["file_names"][1]} (dHash distance '
               f'{d["distance"]} bits); kept in one split')
        if d['conflict']:
            msg += ' - CONFLICTING pathology labels'
        problems.add(level, d['file_names'][0], msg)


def add_missing_hashes(coco: dict, root: str, problems: ProblemLog) -> int:
    """Compute ``dhash``/``pixel_sha1`` for images of a COCO file that lack them (a COCO file
    not written by our converter); returns how many were added."""
    from .common import dhash, pixel_digest, read_image
    n = 0
    for im in coco['images']:
        if im.get('dhash') and im.get('pixel_sha1'):
            continue
        try:
            gray = read_image(os.path.join(root, im['file_name'])).gray
        except ValueError as exc:
            problems.warning(im['file_name'], f'{exc}; no duplicate check for this image')
            continue
        im['dhash'], im['pixel_sha1'] = dhash(gray), pixel_digest(gray)
        n += 1
    return n


def split_coco_file(ann_file: str, out_dir: str, *, root: Optional[str] = None,
                    verbose: bool = True, **split_kwargs) -> dict:
    """Split an existing COCO file (ours, or any COCO whose images carry ``pathology`` and
    ``patient_id``) into the four split files; hashes missing from it are computed from the
    images under ``root`` (without ``root`` only exact/near duplicates already hashed are
    found). ``split_kwargs`` go to :func:`split_dataset`."""
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
    if root is not None:
        add_missing_hashes(coco, root, problems)
    res = split_dataset(coco, **split_kwargs)
    report_duplicates(res.duplicates, problems)
    title = f'{coco["images"][0].get("source", "dataset")} ({os.path.basename(ann_file)})'
    summary = write_split_outputs(coco, res, out_dir, title)
    if verbose:
        if len(problems):
            print(format_problems(problems), file=sys.stderr)
        print(summary_markdown(summary, title))
        print(f'[mmbus] split: {summary["all"]["total"]} images of {ann_file} written to '
              f'{os.path.join(out_dir, "annotations")} (mode {summary["mode"]}, seed '
              f'{summary["seed"]}, {summary["patients_spanning_splits"]} patients spanning '
              'splits)')
    return summary


def convert_and_split(fmt: str, root: str, out_dir: str, *, split: bool = True,
                      ratios: Optional[Dict[str, float]] = None,
                      counts: Optional[Dict[str, Optional[float]]] = None, seed: int = 0,
                      balanced: Sequence[str] = (), external_test: bool = False,
                      test_fold: Optional[int] = None, fold_key: str = 'fold5',
                      dup_threshold: int = DEFAULT_THRESHOLD, verbose: bool = True,
                      **convert_kwargs) -> dict:
    """Convert ``root`` and write ``out_dir/annotations/``:

    * ``external_test``: only ``test.json`` (whole dataset) + summary;
    * ``split`` (default): ``all.json`` and the four split files + summary;
    * otherwise: ``all.json`` only.

    ``conversion_report.json`` lists every problem found. Returns the split summary dict
    (or a small summary without splits). Raises :class:`ConversionError` in strict mode.
    """
    out = convert_dataset(fmt, root, out_dir=out_dir, **convert_kwargs)
    coco = out.coco
    ann_dir = os.path.join(out_dir, 'annotations')
    title = f'{coco["images"][0]["source"]} ({fmt})'
    if split or external_test:
        res = split_dataset(coco, ratios=ratios, counts=counts, seed=seed,
                            dup_threshold=dup_threshold, balanced=balanced,
                            external_test=external_test, test_fold=test_fold,
                            fold_key=fold_key)
        report_duplicates(res.duplicates, out.problems)
        summary = write_split_outputs(coco, res, out_dir, title)
    else:
        write_json_atomic(coco, os.path.join(ann_dir, 'all.json'))
        summary = {'mode': 'no_split', 'all': {'total': len(coco['images'])}}
    summary['conversion'] = {'format': fmt, 'root': os.path.abspath(root),
                             'images_found': out.n_found, 'images_written': len(coco['images']),
                             'images_skipped': out.n_skipped, 'boxes': len(coco['annotations']),
                             'seconds': round(out.seconds, 2), 'problems': out.problems.counts()}
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
        print(f'[mmbus] {fmt}: {c["images_written"]} images, {c["boxes"]} boxes written to '
              f'{ann_dir} ({c["images_skipped"]} skipped, {c["problems"]["error"]} errors, '
              f'{c["problems"]["warning"]} warnings) in {c["seconds"]:.1f} s')
    return summary
