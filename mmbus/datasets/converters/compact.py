"""A compact copy of a converted COCO dataset, small enough to travel with a job to a machine that
has no access to the original data (the output of ``tools/dataset_converters/bus_to_coco.py``).

Every image listed in the split files is re-encoded as an 8-bit greyscale JPEG (ultrasound is grey:
one channel is a third of the bytes of a colour JPEG), optionally downscaled so that its longer side
is at most ``max_side``; boxes, areas, segmentation polygons, ``width`` and ``height`` follow the
scaling. The copy keeps the source's relative paths with a ``.jpg`` suffix under ``OUT/images/``
and the split files under ``OUT/annotations/``, whose ``file_name`` is relative to ``OUT`` (``images/...``:
``data_root=OUT`` as for the converter's output); every other key of the records is kept as it was
(``dhash`` / ``pixel_sha1`` still describe the source pixels: the duplicate groups they found are
already baked into the split). ``OUT/COMPACT.json`` says what was done.

Lesion masks: the converter's records carry boxes only and name no mask file, so there is nothing
to copy; the summary says so (``masks``).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from mmbus.utils.io import atomic_write_json, make_temp_dir, replace_dir

from .imread import read_image

SPLITS = ('basic_train', 'extended_train', 'val', 'test')
MARKER = 'COMPACT.json'


def _size_of(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(osp.getsize(osp.join(folder, f)) for f in files)
    return total


def mib(n: int) -> str:
    return f'{n / 2 ** 20:.1f} MiB'


def _out_name(file_name: str) -> str:
    """``file_name`` with a ``.jpg`` suffix, kept inside the images folder: a ``..`` part (the
    converter's 8-bit copies of 16-bit files can lie beside the dataset root) becomes
    ``_parent_`` so the copy never writes outside its folder."""
    parts = [p for p in file_name.replace('\\', '/').split('/') if p not in ('', '.')]
    parts = ['_parent_' if p == '..' else p for p in parts]
    if not parts:
        raise ValueError(f'empty file_name {file_name!r}')
    return '/'.join(parts[:-1] + [osp.splitext(parts[-1])[0] + '.jpg'])


def _num(v: float):
    """Rounded like the converter's boxes (2 decimals; an int when whole)."""
    v = round(float(v), 2)
    return int(v) if v.is_integer() else v


def scale_annotation(ann: dict, sx: float, sy: float, where: str) -> dict:
    """A copy of ``ann`` with bbox, area and polygon segmentation scaled by ``sx``/``sy``."""
    ann = dict(ann)
    if sx == 1.0 and sy == 1.0:
        return ann
    if 'bbox' in ann:
        x, y, w, h = ann['bbox']
        ann['bbox'] = [_num(x * sx), _num(y * sy), _num(w * sx), _num(h * sy)]
    if 'area' in ann:
        ann['area'] = _num(ann['area'] * sx * sy)
    seg = ann.get('segmentation')
    if seg:
        if not isinstance(seg, list):
            # RLE masks would have to be decoded, resized and re-encoded; no dataset of ours has them
            raise ValueError(f'{where}: annotation {ann.get("id")} has an RLE segmentation, which '
                             'cannot be rescaled here; run without --max-side')
        ann['segmentation'] = [[_num(v * (sx if k % 2 == 0 else sy)) for k, v in enumerate(poly)]
                               for poly in seg]
    return ann


def _load_splits(ann_dir: str, splits: Sequence[str]) -> Dict[str, dict]:
    missing = [osp.join(ann_dir, f'{s}.json') for s in splits
               if not osp.isfile(osp.join(ann_dir, f'{s}.json'))]
    if missing:
        raise FileNotFoundError('split file(s) missing: ' + ', '.join(missing)
                                + ' (expected the output of tools/dataset_converters/bus_to_coco.py)')
    out = {}
    for s in splits:
        path = osp.join(ann_dir, f'{s}.json')
        try:
            with open(path) as f:
                coco = json.load(f)
        except ValueError as exc:
            raise ValueError(f'{path}: not valid JSON ({exc})') from None
        if not isinstance(coco, dict) or not isinstance(coco.get('images'), list):
            raise ValueError(f'{path}: not a COCO file (no "images" list)')
        out[s] = coco
    return out


def encode_grey_jpeg(gray: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode('.jpg', gray, [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                                          cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise OSError('the JPEG encoder failed')
    return buf.tobytes()


def compact_coco(src_root: str, out_dir: str, ann_dir: Optional[str] = None, quality: int = 90,
                 max_side: Optional[int] = None, splits: Sequence[str] = SPLITS,
                 progress_every: int = 300, log: Callable[[str], None] = print) -> dict:
    """Write the compact copy of the dataset at ``src_root`` (the folder ``file_name`` paths are
    relative to; split files in ``ann_dir``, default ``src_root/annotations``) to ``out_dir``.

    ``out_dir`` is built beside itself and renamed into place when complete; an existing
    ``out_dir`` is replaced only when it is empty or an earlier compact copy (has
    ``COMPACT.json``). Returns the summary also written to ``out_dir/COMPACT.json``.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the split file or image at fault.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f'JPEG quality must be 1..100, got {quality}')
    if max_side is not None and int(max_side) < 1:
        raise ValueError(f'max-side must be a positive number of pixels, got {max_side}')
    if not osp.isdir(src_root):
        raise FileNotFoundError(f'dataset root {src_root} is not a folder')
    src_root = osp.abspath(src_root)
    ann_dir = osp.abspath(ann_dir or osp.join(src_root, 'annotations'))
    out_dir = osp.abspath(out_dir.rstrip('/\\') or out_dir)
    if osp.exists(out_dir) and not (osp.isdir(out_dir) and (
            not os.listdir(out_dir) or osp.isfile(osp.join(out_dir, MARKER)))):
        raise FileExistsError(f'{out_dir} exists and is not an earlier compact copy (no {MARKER}); '
                              'choose another output folder or remove it')
    cocos = _load_splits(ann_dir, splits)

    # every image once, even if two split files list it; all missing files are named at once
    todo: Dict[str, Tuple[str, str]] = {}
    for s, coco in cocos.items():
        for im in coco['images']:
            fn = im.get('file_name')
            if not fn:
                raise ValueError(f'{osp.join(ann_dir, s + ".json")}: image {im.get("id")} has no file_name')
            todo.setdefault(fn, (s, _out_name(fn)))
    missing = [(fn, s) for fn, (s, _) in todo.items() if not osp.isfile(osp.join(src_root, fn))]
    if missing:
        shown = '; '.join(f'{osp.join(src_root, fn)} (listed in {s}.json)' for fn, s in missing[:10])
        more = f'; and {len(missing) - 10} more' if len(missing) > 10 else ''
        raise FileNotFoundError(f'{len(missing)} image(s) listed but missing on disk: {shown}{more}')
    outs: Dict[str, str] = {}
    for fn, (_, new) in todo.items():
        if new in outs and outs[new] != fn:
            raise ValueError(f'{outs[new]} and {fn} would both become images/{new}')
        outs[new] = fn

    t0 = time.perf_counter()
    parent = osp.dirname(out_dir)
    tmp = make_temp_dir(parent, '.' + osp.basename(out_dir) + '.tmp_')
    try:
        done: Dict[str, Tuple[str, int, int, float, float]] = {}
        for k, (fn, (s, new)) in enumerate(sorted(todo.items()), start=1):
            path = osp.join(src_root, fn)
            try:
                gray = read_image(path).gray
            except ValueError as exc:
                raise ValueError(f'{path} (listed in {s}.json): {exc}') from None
            h, w = gray.shape
            nw, nh = w, h
            if max_side is not None and max(w, h) > max_side:
                f = max_side / max(w, h)
                nw, nh = max(1, int(round(w * f))), max(1, int(round(h * f)))
                gray = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA)
            dst = osp.join(tmp, 'images', new)
            os.makedirs(osp.dirname(dst), exist_ok=True)
            with open(dst, 'wb') as f:
                f.write(encode_grey_jpeg(gray, quality))
            done[fn] = (new, nw, nh, nw / w, nh / h)
            if progress_every and (k % progress_every == 0 or k == len(todo)):
                log(f'[compact] {k}/{len(todo)} images ({time.perf_counter() - t0:.1f} s)')

        counts = {}
        for s, coco in cocos.items():
            where = osp.join(ann_dir, f'{s}.json')
            scale = {}
            images = []
            for im in coco['images']:
                new, nw, nh, sx, sy = done[im['file_name']]
                scale[im['id']] = (sx, sy)
                images.append(dict(im, file_name=f'images/{new}', width=nw, height=nh))
            anns = [scale_annotation(a, *scale.get(a.get('image_id'), (1.0, 1.0)), where=where)
                    for a in coco.get('annotations', [])]
            out = dict(coco, images=images, annotations=anns)
            if isinstance(coco.get('info'), dict) or 'info' not in coco:
                out['info'] = dict(coco.get('info') or {},
                                   compact=dict(quality=int(quality), max_side=max_side))
            atomic_write_json(out, osp.join(tmp, 'annotations', f'{s}.json'))
            counts[s] = dict(images=len(images), annotations=len(anns))

        parts = {'images': _size_of(osp.join(tmp, 'images')),
                 'annotations': _size_of(osp.join(tmp, 'annotations')), 'masks': 0}
        summary = dict(source=osp.basename(src_root), quality=int(quality), max_side=max_side,
                       counts=counts, images=len(todo), bytes=parts, masks=(
                           'none: the records name no mask files (the converter keeps boxes only)'),
                       seconds=round(time.perf_counter() - t0, 1))
        summary['total_bytes'] = sum(parts.values())   # the data; COMPACT.json itself (~1 KiB) aside
        atomic_write_json(summary, osp.join(tmp, MARKER), indent=1)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f'[compact] {len(todo)} images -> {out_dir}: images {mib(parts["images"])}, annotations '
        f'{mib(parts["annotations"])}, masks none (no mask files referenced), total '
        f'{mib(summary["total_bytes"])} (JPEG quality {quality}'
        f'{f", longer side <= {max_side}" if max_side else ", full size"})')
    return summary
