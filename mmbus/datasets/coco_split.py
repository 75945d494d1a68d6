"""Loading one COCO split file of the data contract as a :class:`pycocotools.coco.COCO` index.

What the crop extraction reads from it: ``images`` (``id``, ``file_name`` relative to the data root,
``pathology``, ``patient_id``, ``source``, optional ``label_hidden``), in file order, and the ``annotations``
of each image (``bbox`` ``[x, y, w, h]`` in pixels) through ``imgToAnns``. The index needs ``id`` on images and
annotations, ``image_id`` on annotations and ``category_id`` when there are ``categories``, as in every file the
converters write and as mmdet's ``CocoDataset`` requires.
"""
import contextlib
import io
import json
import os.path as osp

from pycocotools.coco import COCO


def coco_from_dict(data: dict, name: str = 'COCO data') -> COCO:
    """A :class:`COCO` index over an already loaded dict (pycocotools' progress prints are swallowed).

    Raises:
        ValueError: an entry lacks a key the index needs (``id``, ``image_id``, ``category_id``); names
            ``name``.
    """
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except KeyError as e:
        raise ValueError(f'{name}: an entry has no {e} key; a COCO index needs "id" on images and '
                         'annotations, "image_id" on annotations and "category_id" when the file has '
                         'categories (not a COCO annotation file of the data contract?)') from None
    return coco


def load_coco_split(ann_file: str) -> COCO:
    """Load and sanity-check a COCO split file of the data contract.

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        ValueError: not valid JSON, no ``images`` / ``annotations`` list, or an entry without a key the
            index needs (see :func:`coco_from_dict`).
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file not found: {ann_file}')
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{ann_file} is not valid JSON: {e}') from e
    for key in ('images', 'annotations'):
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f'{ann_file} has no "{key}" list (not a COCO '
                             'annotation file?)')
    return coco_from_dict(data, ann_file)
