"""BUSDataset: breast-ultrasound nodule boxes in the mmbus COCO format (mmdet side).

The COCO files are written by the mmbus converters (see the data contract): one category
``nodule`` (id 1), boxes ``[x, y, w, h]`` in pixels, and per image the extra keys ``pathology``
("benign" | "malignant" | "normal"), ``patient_id``, ``source`` and, on extended-train images,
``label_hidden``. Stage 1 (the detector) only needs the boxes, but the later stages (crop
extraction, the benign/malignant classifier, per-patient evaluation) need the image-level keys,
so they are copied into every data info and travel with the sample (``metainfo_keys`` of
PackDetInputs can forward them to the data sample).
"""
import os.path as osp
from typing import List

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.logging import print_log

from mmbus.classes import CLASSES

PATHOLOGIES = CLASSES + ('normal', )


@DATASETS.register_module()
class BUSDataset(CocoDataset):
    """Single-class (``nodule``) COCO dataset for breast ultrasound.

    Every data info gets, besides mmdet's ``img_path``/``img_id``/``instances``:

    - ``file_name`` (str): image path relative to the dataset root, as in the JSON;
    - ``pathology`` (str): "benign", "malignant" or "normal";
    - ``patient_id`` (str), ``source`` (str): who/where the image comes from;
    - ``label_hidden`` (bool): True on extended-train images whose pathology must not be used
      as a label (semi-supervised stage); False when the key is absent.

    Normal images (no nodule box) are kept in test mode; in training they are dropped only when
    ``filter_cfg=dict(filter_empty_gt=True)`` (the configs' default, as in the paper which trains
    the detector on images with nodules) and the number dropped is logged, never silent. With
    ``filter_empty_gt=False`` they train as pure-background images (Faster R-CNN handles an empty
    ``gt_instances``).
    """

    METAINFO = {'classes': ('nodule', ), 'palette': [(255, 255, 0)]}

    #: ids of annotations mmdet's parser skipped (zero area, outside the image), for the record.
    dropped_annotation_ids: List[int]
    #: number of images filter_cfg left out (training only).
    num_filtered_images: int = 0

    def load_data_list(self) -> List[dict]:
        self.dropped_annotation_ids = []
        try:
            data_list = super().load_data_list()
        except KeyError as err:
            raise ValueError(
                f'{self.ann_file}: not a COCO detection file of the mmbus format '
                f'(missing key {err}); expected "images", "annotations" and '
                f'"categories" with a category named "nodule".') from err
        if not self.cat_ids:
            raise ValueError(
                f'{self.ann_file}: no category named {self.metainfo["classes"]} in '
                '"categories"; the mmbus format has categories=[{"id": 1, "name": "nodule"}].')
        if self.dropped_annotation_ids:
            print_log(
                f'{self.ann_file}: ignored {len(self.dropped_annotation_ids)} degenerate or '
                f'out-of-image boxes (annotation ids {self.dropped_annotation_ids[:10]}'
                f'{"..." if len(self.dropped_annotation_ids) > 10 else ""})',
                logger='current', level=30)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        img_info = raw_data_info['raw_img_info']
        for key in ('file_name', 'width', 'height'):
            if key not in img_info:
                raise ValueError(f'{self.ann_file}: image id {img_info.get("id")} has no '
                                 f'"{key}"')
        data_info = super().parse_data_info(raw_data_info)
        kept = len(data_info['instances'])
        given = sum(1 for ann in raw_data_info['raw_ann_info'] if not ann.get('ignore', False))
        if kept < given:
            kept_boxes = {tuple(inst['bbox']) for inst in data_info['instances']}
            for ann in raw_data_info['raw_ann_info']:
                x, y, w, h = ann['bbox']
                if (x, y, x + w, y + h) not in kept_boxes:
                    self.dropped_annotation_ids.append(ann.get('id'))
        pathology = img_info.get('pathology')
        if pathology is not None and pathology not in PATHOLOGIES:
            raise ValueError(f'{self.ann_file}: image "{img_info["file_name"]}" has pathology '
                             f'{pathology!r}; expected one of {PATHOLOGIES}')
        data_info['file_name'] = img_info['file_name']
        data_info['pathology'] = pathology
        data_info['patient_id'] = str(img_info.get('patient_id', ''))
        data_info['source'] = img_info.get('source', '')
        data_info['label_hidden'] = bool(img_info.get('label_hidden', False))
        return data_info

    def filter_data(self) -> List[dict]:
        valid = super().filter_data()
        dropped = len(self.data_list) - len(valid)
        self.num_filtered_images = dropped
        if dropped:
            print_log(
                f'{osp.basename(self.ann_file)}: {dropped} of {len(self.data_list)} images '
                f'left out of training by filter_cfg={dict(self.filter_cfg)} '
                '(images without nodule boxes or smaller than min_size)',
                logger='current')
        return valid
