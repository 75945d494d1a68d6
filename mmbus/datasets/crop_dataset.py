"""BUSCropDataset: nodule crops for the benign/malignant classifier
(mmpretrain).

Reads the crops JSON of the mmbus data contract (written by
``tools/extract_crops.py``)::

    <crop_dir>/<split>.json = {
      "metainfo": {"classes": ["benign", "malignant"]},
      "data_list": [{"img_path": "<split>/<name>.png",   # relative to crop_dir
                     "gt_label": 0 | 1 | -1,            # -1 = unlabelled
                     "true_label": 0 | 1, "image_id", "file_name",
                     "patient_id", "bbox": [x1, y1, x2, y2], "det_score"}]}

Classes: 0 = benign, 1 = malignant. ``gt_label == -1`` marks a sample whose
label is hidden (the paper's extended training set); mean teacher uses it as
unlabelled, ``use_hidden_labels=True`` reveals ``true_label`` instead (the
"all labelled" supervised baseline).
"""
import os.path as osp
from typing import List

import numpy as np
from mmengine.fileio import load
import mmbus.compat  # noqa: F401,I100  (before mmpretrain.models: see switch_off_unusable_multimodal)
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from mmbus.classes import CLASSES


@DATASETS.register_module()
class BUSCropDataset(BaseDataset):
    """Breast-ultrasound nodule crops.

    Args:
        ann_file (str): The crops JSON (``<crop_dir>/<split>.json``), relative
            to ``data_root`` or absolute.
        data_root (str): The crop dir; ``img_path`` entries are relative to
            it.
        use_hidden_labels (bool): Replace ``gt_label == -1`` by the sample's
            ``true_label`` (every sample becomes labelled).
        drop_unlabelled (bool): Drop samples whose label is (still) -1.
        **kwargs: Passed to :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``test_mode``, ...).
    """
    METAINFO = dict(classes=CLASSES)

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 use_hidden_labels: bool = False,
                 drop_unlabelled: bool = False,
                 **kwargs):
        self.use_hidden_labels = use_hidden_labels
        self.drop_unlabelled = drop_unlabelled
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        path = self.ann_file
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'crop annotation file {path} does not exist (expected '
                '<crop_dir>/<split>.json written by tools/extract_crops.py)')
        try:
            raw = load(path)
        except Exception as e:  # noqa: BLE001  (re-raised with the path)
            raise ValueError(f'{path}: not valid JSON ({e})') from e
        if not isinstance(raw, dict) or not isinstance(
                raw.get('data_list'), list):
            raise ValueError(f'{path}: expected a dict with a "data_list" '
                             'list (mmengine BaseDataset format)')
        classes = tuple(raw.get('metainfo', {}).get('classes', CLASSES))
        if classes != CLASSES:
            raise ValueError(f'{path}: metainfo.classes must be '
                             f'{list(CLASSES)}, got {list(classes)}')
        img_root = self.data_prefix.get('img_path') or self.data_root
        data_list = []
        for i, item in enumerate(raw['data_list']):
            where = f'{path}: data_list[{i}]'
            if 'img_path' not in item or 'gt_label' not in item:
                raise ValueError(f'{where} lacks "img_path" or "gt_label"')
            label = int(item['gt_label'])
            true_label = item.get('true_label')
            if label not in (-1, 0, 1):
                raise ValueError(f'{where}: gt_label must be 0, 1 or -1, '
                                 f'got {label}')
            if true_label is not None and int(true_label) not in (0, 1):
                raise ValueError(f'{where}: true_label must be 0 or 1, '
                                 f'got {true_label}')
            if label == -1 and self.use_hidden_labels:
                if true_label is None:
                    raise ValueError(f'{where}: use_hidden_labels=True but '
                                     'the sample has no "true_label"')
                label = int(true_label)
            if label == -1 and self.drop_unlabelled:
                continue
            info = dict(item)
            info['img_path'] = osp.join(img_root, item['img_path'])
            info['gt_label'] = label
            data_list.append(info)
        return data_list

    def _serialize_data(self):
        # mmengine cannot serialise an empty list (np.concatenate of nothing);
        # an empty split (e.g. every image missed by the detector) is valid.
        if not self.data_list:
            return np.zeros(0, np.uint8), np.zeros(0, np.int64)
        return super()._serialize_data()

    def is_labelled(self) -> List[bool]:
        """Per-sample flags: ``gt_label >= 0``."""
        return [int(self.get_data_info(i)['gt_label']) >= 0
                for i in range(len(self))]
