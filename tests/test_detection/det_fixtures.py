"""Tiny breast-ultrasound-like COCO fixtures for the detector tests (no dependency on the data
developer's generator): grey speckle background, one dark elliptical nodule per abnormal
image, COCO JSON in the mmbus data contract (file_name relative to the dataset root, pathology,
patient_id, source, label_hidden)."""
import json
import os
import os.path as osp
from typing import List, Optional

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PYTHON = osp.join(REPO, '.venv', 'bin', 'python')


def draw_bus_image(rng: np.random.Generator, width: int, height: int,
                   with_nodule: bool = True):
    """Return (grey uint8 image, [x, y, w, h] box or None)."""
    img = rng.normal(110, 25, (height, width)).clip(0, 255)
    # Speckle-like texture: blurred multiplicative noise.
    speckle = cv2.GaussianBlur(rng.gamma(4.0, 0.25, (height, width)), (0, 0), 1.2)
    img = (img * speckle).clip(0, 255)
    box = None
    if with_nodule:
        ax = int(rng.integers(width // 8, width // 4))
        ay = int(rng.integers(height // 10, height // 5))
        cx = int(rng.integers(ax + 2, width - ax - 2))
        cy = int(rng.integers(ay + 2, height - ay - 2))
        mask = np.zeros((height, width), np.uint8)
        cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 255, -1)
        img[mask > 0] = img[mask > 0] * 0.2 + 8
        cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, 200, 1)
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        box = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    return img.astype(np.uint8), box


def make_bus_coco(root: str, splits: dict, width: int = 96, height: int = 80,
                  normal_every: int = 0, seed: int = 0, source: str = 'hospital_test',
                  hidden_split: Optional[str] = None) -> dict:
    """Write images under ``root/{benign,malignant,normal}/`` and
    ``root/annotations/<split>.json`` for ``splits={'basic_train': n, ...}``.

    Every ``normal_every``-th image (if > 0) is a normal image without nodule.
    Returns {split: list of (file_name, box or None, pathology)}.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    out = {}
    counter = 0
    for split, n in splits.items():
        images, anns, records = [], [], []
        for i in range(n):
            counter += 1
            normal = normal_every > 0 and (i + 1) % normal_every == 0
            pathology = 'normal' if normal else ('malignant' if i % 2 else 'benign')
            img, box = draw_bus_image(rng, width, height, with_nodule=not normal)
            file_name = f'{pathology}/{split}_{i:03d}.png'
            os.makedirs(osp.join(root, pathology), exist_ok=True)
            cv2.imwrite(osp.join(root, file_name), img)
            info = dict(id=counter, file_name=file_name, width=width, height=height,
                        pathology=pathology, patient_id=f'P{counter // 2:04d}', source=source)
            if split == hidden_split:
                info['label_hidden'] = True
            images.append(info)
            if box is not None:
                anns.append(dict(id=len(anns) + 1 + 1000 * counter, image_id=counter,
                                 category_id=1, bbox=box, area=box[2] * box[3], iscrowd=0))
            records.append((file_name, box, pathology))
        coco = dict(images=images, annotations=anns,
                    categories=[dict(id=1, name='nodule')])
        with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
            json.dump(coco, f)
        out[split] = records
    return out


def tiny_detector_cfg(data_root: str, work_dir: str, max_iters: int = 4,
                      img_scale=(96, 96)) -> 'Config':  # noqa: F821
    """The CPU-quick config shrunk for a seconds-long run on the fixture in ``data_root``."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py'))
    set_data(cfg, data_root, img_scale)
    cfg.work_dir = work_dir
    cfg.model.roi_head.bbox_head.fc_out_channels = 64
    cfg.model.rpn_head.feat_channels = 32
    cfg.model.train_cfg.rcnn.sampler.num = 16
    cfg.model.train_cfg.rpn_proposal.max_per_img = 50
    cfg.model.test_cfg.rpn.max_per_img = 20
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler = [
        dict(type='ExponentialLR', gamma=0.9, by_epoch=False, begin=0, end=max_iters)
    ]
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor.window_size = 1
    return cfg


def set_data(cfg, data_root: str, img_scale=(96, 96)) -> None:
    """Point every dataloader and evaluator of ``cfg`` at the fixture in ``data_root``."""
    data_root = data_root.rstrip('/') + '/'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[key].dataset
        ds.data_root = data_root
        for t in ds.pipeline:
            if t['type'] == 'Resize':
                t['scale'] = img_scale
    cfg.train_dataloader.batch_size = 2
    for key, ann in (('val_evaluator', 'annotations/val.json'),
                     ('test_evaluator', 'annotations/test.json')):
        for ev in cfg[key]:
            if ev['type'] == 'CocoMetric':
                ev['ann_file'] = data_root + ann


def box_list(records: List[tuple]) -> List[list]:
    return [r[1] for r in records]
