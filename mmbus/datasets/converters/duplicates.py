"""Leakage guard: duplicate images, their groups, and the union-find that keeps patients and
duplicates together when splitting.

Three kinds of duplicate pairs:

* ``exact``: same ``pixel_sha1`` (same decoded pixels);
* ``near``: difference hashes (``dhash``, 256 bits) within ``threshold`` bits Hamming distance:
  the same picture re-encoded, rescaled as a whole or slightly brightened (on BUS-BRA distinct
  images are at least 57 bits apart, such copies a few bits);
* ``recrop``: the same scan cut at another zoom or offset, rescaled, with other overlays --
  found by the re-crop guard (:mod:`.neardup`) when fingerprints are given.

Duplicates form connected groups (:func:`duplicate_groups`); a group whose images carry
different pathology labels is a *label conflict*, and two copies whose boxes disagree (the
same scan annotated twice, differently) a *mask conflict*.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .neardup import DEFAULT_MIN_SPECKLE, Fingerprint
from .neardup_verify import find_recrops

DEFAULT_THRESHOLD = 10


def connected_groups(items: Iterable[Hashable], links: Iterable[Sequence[Hashable]]) -> List[List[Hashable]]:
    """Members of every connected set of ``items`` joined by ``links`` (pairs or longer tuples; their members
    are added to the items), scipy's disjoint sets underneath; each group in the order its members were first
    seen, the groups in the order of their first member."""
    from scipy.cluster.hierarchy import DisjointSet
    ds = DisjointSet(items)
    for link in links:
        for x in link:
            ds.add(x)
        for x in link[1:]:
            ds.merge(link[0], x)
    out: Dict[Hashable, list] = defaultdict(list)
    for it in ds:  # insertion order
        out[ds[it]].append(it)
    return list(out.values())


def _hash_matrix(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes -> ``N x words`` uint64 matrix (all hashes must have the same length)."""
    raw = b''.join(bytes.fromhex(h) for h in hashes)
    nbytes = len(bytes.fromhex(hashes[0]))
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(len(hashes), nbytes)
    pad = (-nbytes) % 8
    if pad:
        arr = np.concatenate([arr, np.zeros((len(hashes), pad), np.uint8)], axis=1)
    return np.ascontiguousarray(arr).view(np.uint64)


def hamming_pairs(hashes: Sequence[str], threshold: int,
                  max_block_bytes: int = 64 << 20) -> List[Tuple[int, int, int]]:
    """All index pairs ``(i, j, distance)`` with ``i < j`` and Hamming distance <= threshold.

    Vectorised: XOR of 64-bit words + popcount, in row blocks of at most
    ``max_block_bytes`` of XOR results (O(N^2) work, about 0.1 s for 2,000 images).
    """
    n = len(hashes)
    if n < 2 or threshold < 0:
        return []
    mat = _hash_matrix(hashes)
    block = max(1, max_block_bytes // (n * mat.shape[1] * 8))
    pairs = []
    for start in range(0, n, block):
        a = mat[start:start + block]
        dist = np.bitwise_count(a[:, None, :] ^ mat[None, :, :]).sum(axis=2, dtype=np.int32)
        ii, jj = np.nonzero(dist <= threshold)
        for i, j in zip(ii + start, jj):
            if i < j:
                pairs.append((int(i), int(j), int(dist[i - start, j])))
    return pairs


def find_duplicates(images: Sequence[dict], threshold: int = DEFAULT_THRESHOLD,
                    fingerprints: Optional[Dict[int, Optional[Fingerprint]]] = None,
                    min_speckle: float = DEFAULT_MIN_SPECKLE, workers: int = 1) -> List[dict]:
    """Duplicate pairs among COCO image entries (which carry ``dhash`` and ``pixel_sha1``).

    Returns dicts ``{image_ids: [a, b], file_names: [..], kind: 'exact'|'near'|'recrop',
    distance: dHash bits, transform: [sx, sy, dx, dy], conflict: bool}``, re-crops also
    with ``speckle`` and ``ncc``; ``transform`` maps pixels of the first image onto the
    second (``x' = sx x + dx``, ``y' = sy y + dy``); ``conflict`` is true when the two carry
    different pathology labels.
    ``threshold < 0`` disables the dHash search; ``fingerprints`` (image id -> fingerprint)
    enable the re-crop guard (see :func:`.neardup.find_recrops`).
    """
    found: Dict[Tuple[int, int], dict] = {}
    by_digest: Dict[str, list] = defaultdict(list)
    for idx, im in enumerate(images):
        if im.get('pixel_sha1'):
            by_digest[im['pixel_sha1']].append(idx)
    for idxs in by_digest.values():
        for k in idxs[1:]:
            found[(idxs[0], k)] = {'kind': 'exact', 'transform': [1.0, 1.0, 0.0, 0.0]}
    with_hash = [i for i, im in enumerate(images) if im.get('dhash')]
    if with_hash and threshold >= 0:
        lengths = {len(images[i]['dhash']) for i in with_hash}
        if len(lengths) != 1:
            raise ValueError('images carry dhash values of different lengths')
        for a, b, _ in hamming_pairs([images[i]['dhash'] for i in with_hash], threshold):
            ia, ib = with_hash[a], with_hash[b]
            sx = images[ib].get('width', 1) / max(images[ia].get('width', 1), 1)
            sy = images[ib].get('height', 1) / max(images[ia].get('height', 1), 1)
            t = [round(sx, 5), round(sy, 5), 0.0, 0.0]
            found.setdefault((ia, ib), {'kind': 'near', 'transform': t})
    if fingerprints:
        fps = [fingerprints.get(im['id']) for im in images]
        for r in find_recrops(fps, min_speckle=min_speckle, workers=workers, skip=list(found)):
            a, b = r['pair']
            s, dx, dy = r['transform']
            if r['query'] == b:      # store the map from the first image onto the second
                s, dx, dy = 1 / s, -dx / s, -dy / s
            found[(a, b)] = {'kind': 'recrop', 'speckle': r['speckle'], 'ncc': r['ncc'],
                             'transform': [round(s, 5), round(s, 5), round(dx, 2),
                                           round(dy, 2)]}
    out = []
    for (a, b), info in sorted(found.items()):
        ia, ib = images[a], images[b]
        dist = _bits(ia.get('dhash'), ib.get('dhash'))
        entry = {'image_ids': [ia['id'], ib['id']],
                 'file_names': [ia['file_name'], ib['file_name']],
                 'kind': info['kind'], 'distance': dist,
                 'conflict': ia.get('pathology') != ib.get('pathology')}
        entry.update({k: v for k, v in info.items() if k != 'kind'})
        out.append(entry)
    return out


def _bits(h1: Optional[str], h2: Optional[str]) -> Optional[int]:
    if not h1 or not h2 or len(h1) != len(h2):
        return None
    return int(np.bitwise_count(np.frombuffer(bytes.fromhex(h1), np.uint8) ^
                                np.frombuffer(bytes.fromhex(h2), np.uint8)).sum())


def _map_box(box, t):
    """Box ``[x, y, w, h]`` through transform ``[sx, sy, dx, dy]``."""
    x, y, w, h = box
    sx, sy, dx, dy = t
    return [sx * x + dx, sy * y + dy, sx * w, sy * h]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _inside(box, width, height) -> float:
    """Fraction of ``box``'s area inside a ``width x height`` image."""
    ix = max(0.0, min(box[0] + box[2], width) - max(box[0], 0.0))
    iy = max(0.0, min(box[1] + box[3], height) - max(box[1], 0.0))
    return ix * iy / max(box[2] * box[3], 1e-9)


def mask_conflict(pair: dict, boxes: Dict[int, list], sizes: Dict[int, Tuple[int, int]],
                  min_iou: float = 0.5) -> Optional[dict]:
    """The two copies' boxes in one frame, when they disagree (``None`` when they agree).

    The first image's boxes are mapped onto the second through the pair's transform; boxes
    mostly outside the other image's field are not compared. They agree when every compared
    box has a partner with IoU >= ``min_iou`` both ways.
    """
    a, b = pair['image_ids']
    ba, bb = boxes.get(a, []), boxes.get(b, [])
    if not ba or not bb or 'transform' not in pair:
        return None
    w, h = sizes[b]
    mapped = [_map_box(x, pair['transform']) for x in ba]
    mapped = [m for m in mapped if _inside(m, w, h) >= 0.5]
    if not mapped:
        return None
    worst = min(min(max(_iou(m, x) for x in bb) for m in mapped),
                min(max(_iou(m, x) for m in mapped) for x in bb))
    if worst >= min_iou and len(mapped) == len(bb):
        return None
    return {'file_names': pair['file_names'], 'iou': round(worst, 3),
            'boxes': [[round(v, 1) for v in m] for m in mapped], 'other_boxes': bb}


def duplicate_groups(images: Sequence[dict], duplicates: Sequence[dict],
                     boxes: Optional[Dict[int, list]] = None) -> List[dict]:
    """Connected groups of duplicates (two or more images each), sorted by first file name.

    Each group: ``image_ids``, ``file_names``, ``pathologies`` (per image), ``kinds`` (of its
    pairs), ``label_conflict`` (its images carry more than one pathology) and
    ``mask_conflicts`` (pairs whose boxes disagree, see :func:`mask_conflict`; needs
    ``boxes``, image id -> list of ``[x, y, w, h]``).
    """
    by_id = {im['id']: im for im in images}
    sizes = {im['id']: (im.get('width', 0), im.get('height', 0)) for im in images}
    out = []
    for members in connected_groups((), (d['image_ids'] for d in duplicates)):
        ids = sorted(members, key=lambda i: by_id[i]['file_name'])
        member_set = set(ids)
        pairs = [d for d in duplicates if d['image_ids'][0] in member_set]
        conflicts = []
        if boxes is not None:
            for d in pairs:
                c = mask_conflict(d, boxes, sizes)
                if c:
                    conflicts.append(c)
        paths = [by_id[i].get('pathology') for i in ids]
        out.append({'image_ids': ids, 'file_names': [by_id[i]['file_name'] for i in ids],
                    'pathologies': paths, 'kinds': sorted({d['kind'] for d in pairs}),
                    'label_conflict': len(set(paths)) > 1, 'mask_conflicts': conflicts})
    return sorted(out, key=lambda g: g['file_names'][0])


def leakage_groups(images: Sequence[dict], duplicates: Sequence[dict]) -> List[List[int]]:
    """Image-id groups that must stay in one split: same ``patient_id`` or duplicates
    (transitively: connected sets). Groups are sorted by their smallest image id."""
    first_of_patient: Dict[str, int] = {}
    links = []
    for im in images:
        pid = str(im.get('patient_id', ''))
        if pid:
            if pid in first_of_patient:
                links.append((first_of_patient[pid], im['id']))
            else:
                first_of_patient[pid] = im['id']
    links += [d['image_ids'] for d in duplicates]
    groups = [sorted(g) for g in connected_groups((im['id'] for im in images), links)]
    return sorted(groups, key=lambda g: g[0])
