"""Shared pieces of the breast-ultrasound converters.

Everything a format module needs besides its own folder/CSV logic lives here:

* :class:`ProblemLog` collects one message per faulty file (``error`` faults stop a
  strict conversion, ``warning``/``info`` are only reported);
* :func:`~.imread.read_image` / :func:`~.imread.read_mask` (module :mod:`.imread`) decode
  PNG/JPEG/BMP/TIFF files of any common mode (L, RGB, RGBA, P, 1, 16-bit) into 8-bit
  grayscale numpy arrays;
* :func:`~.masks.mask_boxes` (module :mod:`.masks`) turns a lesion mask into boxes (pixel
  ``[x, y, w, h]``), leaving out specks under ``min_region_area`` pixels;
* :func:`process_image_task` is the per-image worker (read, check masks, hash, fingerprint
  for the re-crop guard) that the converters run in a process pool.

Box convention everywhere in this package: COCO ``[x, y, w, h]`` in pixels, where ``x, y``
is the top-left pixel of the lesion and ``w, h`` count pixels *inclusively*, i.e. a mask
whose foreground spans columns 10..19 gives ``x=10, w=10``.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from mmbus.classes import CLASSES

from .imread import DecodedImage, looks_like_image, read_image, read_mask  # noqa: F401
from .masks import DEFAULT_MIN_REGION_AREA, analyse_mask, mask_boxes  # noqa: F401
from .neardup import Fingerprint, fingerprint

#: file extensions treated as images; anything else found in a dataset folder is a stray file.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
#: accepted pathology labels (lower case); synonyms map to these.
PATHOLOGIES = CLASSES + ('normal', )
_PATHOLOGY_ALIASES = {
    'benign': 'benign', 'b': 'benign', 'non-cancer': 'benign', 'noncancer': 'benign',
    'malignant': 'malignant', 'm': 'malignant', 'cancer': 'malignant',
    'normal': 'normal', 'n': 'normal',
}


def normalise_pathology(label) -> Optional[str]:
    """Map a pathology label to ``'benign'|'malignant'|'normal'`` or ``None`` if unknown.

    Case and surrounding spaces are ignored; ``B``/``M``/``N`` and ``cancer``/``non-cancer``
    are accepted as synonyms. Numbers are *not* accepted (0/1 mean different things in
    different hospitals' spreadsheets).
    """
    if label is None:
        return None
    return _PATHOLOGY_ALIASES.get(str(label).strip().lower())


def is_image_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


class ConversionError(RuntimeError):
    """Raised by a strict conversion; ``problems`` holds every fault found (not just the first).

    ``lenient``: the run was lenient already (every image failed), so the message does not
    suggest ``--lenient``; ``kept``: a folder whose earlier files were left as they were.
    """

    def __init__(self, problems: 'ProblemLog', lenient: bool = False,
                 kept: Optional[str] = None):
        self.problems, self.lenient, self.kept = problems, lenient, kept
        super().__init__(self._message())

    def _message(self) -> str:
        errors = self.problems.errors()
        if self.lenient:
            head = (f'{len(errors)} problem(s) found and no image could be converted; nothing '
                    'was written (fix them):')
        else:
            head = (f'{len(errors)} problem(s) found; nothing was written (fix them or rerun '
                    'with --lenient to skip the faulty images):')
        lines = [head] + [f'  {p}' for p in errors]
        if self.kept:
            lines.append(f'The files already in {self.kept} were left as they were (they do '
                         'not come from this run).')
        return '\n'.join(lines)

    def keep_note(self, folder: str) -> 'ConversionError':
        """Name ``folder`` as holding earlier files that were left untouched."""
        self.kept = folder
        self.args = (self._message(),)
        return self


@dataclass
class Problem:
    """One fault of one file. ``level`` is ``'error'``, ``'warning'`` or ``'info'``."""
    level: str
    path: str
    message: str

    def __str__(self) -> str:
        return f'[{self.level}] {self.path}: {self.message}'

    def to_dict(self) -> dict:
        return dict(level=self.level, path=self.path, message=self.message)


class ProblemLog:
    """Collects problems of a conversion, in the order they were found."""

    def __init__(self):
        self.items: List[Problem] = []

    def add(self, level: str, path: str, message: str) -> None:
        assert level in ('error', 'warning', 'info'), level
        self.items.append(Problem(level, str(path), message))

    def error(self, path, message):
        self.add('error', path, message)

    def warning(self, path, message):
        self.add('warning', path, message)

    def info(self, path, message):
        self.add('info', path, message)

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    def errors(self) -> List[Problem]:
        return [p for p in self.items if p.level == 'error']

    def of_level(self, level: str) -> List[Problem]:
        return [p for p in self.items if p.level == level]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def counts(self) -> dict:
        return {lvl: len(self.of_level(lvl)) for lvl in ('error', 'warning', 'info')}

    def to_list(self) -> List[dict]:
        return [p.to_dict() for p in self.items]


# --------------------------------------------------------------------------------------
# perceptual hashing (used by duplicates.py; computed while the image is decoded anyway)
# --------------------------------------------------------------------------------------
def dhash(gray: np.ndarray, hash_size: int = 16) -> str:
    """Difference hash of a grayscale image as a hex string of ``hash_size**2`` bits.

    The image is resized (area interpolation) to ``(hash_size + 1) x hash_size`` and each bit
    says whether a pixel is brighter than its right neighbour. Robust to rescaling,
    re-encoding, small brightness/contrast changes; the Hamming distance between two hashes
    measures how different two images look.
    """
    small = cv2.resize(gray, (hash_size + 1, hash_size), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return np.packbits(bits).tobytes().hex()


def pixel_digest(gray: np.ndarray) -> str:
    """Exact-content digest of the decoded pixels (same picture saved in another format or
    with other metadata gives the same digest)."""
    h = hashlib.sha1(np.ascontiguousarray(gray).tobytes())
    h.update(str(gray.shape).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# per-image worker
# --------------------------------------------------------------------------------------
@dataclass
class ImageTask:
    """What a worker needs to turn one image (and its masks) into a record.

    ``masks`` are absolute mask paths (one box per file, or per region); ``boxes`` are given
    boxes ``[x, y, w, h]`` (boxes-CSV format, no masks). ``expect_lesion`` marks
    benign/malignant images, for which an empty or missing mask is a fault; ``mask_hint``
    says where the masks were looked for (and which option changes that), for the message
    of a missing mask. ``fingerprint``: also compute the re-crop guard's fingerprint.
    """
    path: str                         # absolute image path
    rel: str                          # file_name relative to the dataset root
    pathology: str
    patient_id: str
    masks: Sequence[str] = ()
    boxes: Optional[Sequence[Sequence[float]]] = None
    expect_lesion: bool = True
    per_region: bool = False
    min_region_area: int = DEFAULT_MIN_REGION_AREA
    extra: dict = field(default_factory=dict)
    mask_hint: str = ''
    fingerprint: bool = False


@dataclass
class ImageResult:
    task: ImageTask
    width: int = 0
    height: int = 0
    boxes: List[List[float]] = field(default_factory=list)
    dhash: str = ''
    digest: str = ''
    problems: List[Problem] = field(default_factory=list)
    gray: Optional[np.ndarray] = None   # kept only when the file needs an 8-bit copy
    fingerprint: Optional[Fingerprint] = None
    mask_counts: dict = field(default_factory=dict)   # several_regions / specks (per image)

    @property
    def ok(self) -> bool:
        return not any(p.level == 'error' for p in self.problems)


def _rel_mask(task: ImageTask, mask_path: str) -> str:
    root = task.path[: len(task.path) - len(task.rel)] if task.path.endswith(task.rel) else ''
    return os.path.relpath(mask_path, root) if root else mask_path


def process_image_task(task: ImageTask) -> ImageResult:
    """Decode one image and its masks, derive boxes and hashes, and record every fault."""
    res = ImageResult(task)
    probs = res.problems
    try:
        dec = read_image(task.path)
    except ValueError as exc:
        probs.append(Problem('error', task.rel, str(exc)))
        return res
    for note in dec.notes:
        probs.append(Problem('info', task.rel, note))
    gray = dec.gray
    res.height, res.width = gray.shape
    res.dhash = dhash(gray)
    res.digest = pixel_digest(gray)
    if task.fingerprint:
        res.fingerprint = fingerprint(gray)
    if dec.needs_copy:
        res.gray = gray

    if task.boxes is not None:  # boxes given directly (CSV)
        for b in task.boxes:
            x, y, w, h = (float(v) for v in b)
            if w <= 0 or h <= 0:
                probs.append(Problem('error', task.rel, f'box {list(b)} has non-positive size'))
            elif x < 0 or y < 0 or x + w > res.width + 1e-6 or y + h > res.height + 1e-6:
                probs.append(Problem(
                    'error', task.rel,
                    f'box [x1={x:g}, y1={y:g}, x2={x + w:g}, y2={y + h:g}] lies outside the '
                    f'{res.width}x{res.height} image'))
            else:
                res.boxes.append([x, y, w, h])
        return res

    for mpath in task.masks:
        mrel = _rel_mask(task, mpath)
        try:
            mask = read_mask(mpath)
        except ValueError as exc:
            probs.append(Problem('error', mrel, str(exc)))
            continue
        if mask.shape != gray.shape:
            probs.append(Problem(
                'error', mrel,
                f'mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from image size '
                f'{res.width}x{res.height} of {task.rel}'))
            continue
        _mask_boxes_checked(task, mask, mrel, res)
    if task.expect_lesion and not task.masks:
        hint = f' ({task.mask_hint})' if task.mask_hint else ''
        probs.append(Problem('error', task.rel, f'missing mask for {task.pathology} image{hint}'))
    return res


def _mask_boxes_checked(task: ImageTask, mask: np.ndarray, mrel: str, res: ImageResult) -> None:
    """Boxes of one mask into ``res``, with a note for specks and for several regions."""
    probs = res.problems
    reg = analyse_mask(mask, task.per_region, task.min_region_area)
    boxes = reg.boxes
    if reg.specks:
        res.mask_counts['specks'] = res.mask_counts.get('specks', 0) + len(reg.specks)
        sizes = f'{min(reg.specks)}-{max(reg.specks)}' if len(reg.specks) > 1 else \
            str(reg.specks[0])
        probs.append(Problem('info', mrel, f'{len(reg.specks)} speck(s) of {sizes} px left out '
                                           f'(regions under --min-region-area '
                                           f'{task.min_region_area} px beside the lesion)'))
    if reg.n_regions > 1 and not task.per_region:
        res.mask_counts['several_regions'] = res.mask_counts.get('several_regions', 0) + 1
        probs.append(Problem(
            'warning', mrel,
            f'mask has {reg.n_regions} separate regions ({", ".join(map(str, reg.areas))} px);'
            ' one box around all of them (--one-box-per-region gives one box each)'))
    if not boxes and task.expect_lesion:
        probs.append(Problem('error', mrel,
                             f'empty mask (no lesion pixel) for {task.pathology} image'))
    elif boxes and not task.expect_lesion:
        probs.append(Problem('warning', mrel,
                             f'{task.pathology} image has a non-empty mask; boxes kept'))
    res.boxes.extend(boxes)


def run_tasks(tasks: Sequence[ImageTask], workers: int = 0,
              progress: bool = True) -> List[ImageResult]:
    """Run :func:`process_image_task` over ``tasks`` (order kept).

    ``workers=0`` picks ``min(4, cpu_count)``; ``workers=1`` runs in this process.
    A progress bar goes to stderr for runs of 200+ images when ``progress`` is true.
    """
    if workers <= 0:
        workers = min(4, os.cpu_count() or 1)
    bar = Progress(len(tasks)) if progress and len(tasks) >= 200 else None
    results: List[ImageResult] = []
    if workers == 1 or len(tasks) < 64:
        for t in tasks:
            results.append(process_image_task(t))
            if bar:
                bar.update()
    else:
        # fork keeps start-up cheap; chunks amortise the pickling of small tasks
        ctx = get_context('fork' if sys.platform != 'win32' else 'spawn')
        with ctx.Pool(workers) as pool:
            for r in pool.imap(process_image_task, tasks, chunksize=16):
                results.append(r)
                if bar:
                    bar.update()
    if bar:
        bar.close()
    return results


class Progress:
    """Progress bar on stderr: redrawn in place on a terminal (at most 10 times a second),
    one line per 10% otherwise, so CI logs and orchestrators stay readable."""

    def __init__(self, total: int, label: str = 'converting', stream=None):
        self.total, self.label, self.done = max(total, 1), label, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.t0 = self.last = time.perf_counter()
        self.next_decile = 1

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        rate = self.done / max(now - self.t0, 1e-9)
        if self.tty:
            if now - self.last < 0.1 and self.done < self.total:
                return
            filled = int(30 * self.done / self.total)
            self.stream.write(f'\r{self.label} [{"#" * filled}{"." * (30 - filled)}] '
                              f'{self.done}/{self.total} {rate:.0f} img/s')
            self.stream.flush()
            self.last = now
        elif self.done * 10 >= self.next_decile * self.total:
            self.stream.write(f'{self.label}: {self.done}/{self.total} '
                              f'({rate:.0f} img/s)\n')
            self.next_decile = self.done * 10 // self.total + 1

    def close(self) -> None:
        if self.tty:
            self.stream.write('\n')
        self.stream.flush()


def list_stray_files(folder: str, problems: ProblemLog, root: str,
                     allowed_ext: Tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
    """Report non-image files directly inside ``folder`` (``.DS_Store``, ``Thumbs.db``,
    ``.txt``, ...) as ``info``: they are ignored, never an error."""
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if os.path.isfile(p) and os.path.splitext(name)[1].lower() not in allowed_ext:
            problems.info(os.path.relpath(p, root), 'not an image file; ignored')
