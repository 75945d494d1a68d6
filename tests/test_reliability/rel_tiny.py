"""Tiny detector / classifier configs, data and random-weight checkpoints for the fault-injection tests."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import torch

TINY_DET_MODEL = dict(
    type='FasterRCNN',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.],
                           bgr_to_rgb=True, pad_size_divisor=16),
    backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8, num_stages=4, out_indices=(3, ),
                  norm_cfg=dict(type='BN'), norm_eval=False, style='pytorch'),
    rpn_head=dict(
        type='RPNHead', in_channels=64, feat_channels=16,
        anchor_generator=dict(type='AnchorGenerator', scales=[2, 4], ratios=[1.0], strides=[32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                                out_channels=64, featmap_strides=[32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead', in_channels=64, fc_out_channels=32, roi_feat_size=7, num_classes=1,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=None,
    test_cfg=dict(rpn=dict(nms_pre=100, max_per_img=20, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
                  rcnn=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=5)))

DET_CFG = '''default_scope = 'mmdet'
custom_imports = dict(imports=['mmbus.registry'], allow_failed_imports=False)
model = {model!r}
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type='CocoDataset', data_root={root!r}, ann_file='test.json',
                                    data_prefix=dict(img=''), pipeline=test_pipeline, test_mode=True,
                                    metainfo=dict(classes=('nodule', ))))
test_evaluator = dict(type='CocoMetric', ann_file={root!r} + '/test.json', metric='bbox')
test_cfg = dict(type='TestLoop')
log_level = 'WARNING'
'''

SEMI_CFG = '''default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmbus.registry'], allow_failed_imports=False)
model = dict(type='SemiClassifier',
             data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5], std=[64.], to_rgb=False),
             backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16, dropout=0.0),
             head=dict(type='LinearClsHead', num_classes=2, in_channels=8, loss=dict(type='CrossEntropyLoss')))
test_pipeline = [dict(type='LoadImageFromFile', color_type='grayscale'), dict(type='LetterboxResize', size=32),
                 dict(type='PackInputs')]
test_dataloader = dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type='BUSCropDataset', data_root={root!r}, ann_file='val.json',
                                    pipeline=test_pipeline, test_mode=True))
test_evaluator = [dict(type='BinaryDiagnosticMetric', prefix='teacher')]
test_cfg = dict()
log_level = 'WARNING'
'''


def make_tiny_coco(root, n=2, size=(96, 80)):
    """``n`` grey-ish colour images with one box each and ``<root>/test.json``."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    w, h = size
    for i in range(n):
        name = f'img{i}.png'
        cv2.imwrite(osp.join(root, name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[20, 20, 30, 25], area=750, iscrowd=0))
    with open(osp.join(root, 'test.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=[dict(id=1, name='nodule')]), f)


def build(cfg_path, scope):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    with DefaultScope.overwrite_default_scope(scope):
        return (DET if scope == 'mmdet' else CLS).build(Config.fromfile(cfg_path).model)


def write_tiny_detector(out_dir):
    """(config, checkpoint) of a random-weight tiny Faster R-CNN with a 2-image COCO test set."""
    os.makedirs(out_dir, exist_ok=True)
    data = osp.join(out_dir, 'coco')
    make_tiny_coco(data)
    cfg = osp.join(out_dir, 'det.py')
    with open(cfg, 'w') as f:
        f.write(DET_CFG.format(model=TINY_DET_MODEL, root=data))
    torch.manual_seed(0)
    model = build(cfg, 'mmdet')
    ckpt = osp.join(out_dir, 'det.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=('nodule', )))), ckpt)
    return cfg, ckpt


def write_tiny_semi(out_dir, crop_root):
    """(config, checkpoint, model) of a random-weight tiny SemiClassifier (teacher != student) tested on the
    crops' val split."""
    os.makedirs(out_dir, exist_ok=True)
    cfg = osp.join(out_dir, 'semi.py')
    with open(cfg, 'w') as f:
        f.write(SEMI_CFG.format(root=crop_root))
    torch.manual_seed(0)
    model = build(cfg, 'mmpretrain')
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    ckpt = osp.join(out_dir, 'semi.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return cfg, ckpt, model


def mt_cfg(crop_root, work_dir, max_epochs, resume=False, random_state=True, workers=1):
    # RandomFlip runs in the (persistent) worker: its draws come from the worker's generators
    pipeline = [dict(type='LoadImageFromFile', color_type='grayscale'),
                dict(type='LetterboxResize', size=16),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='PackInputs')]
    val_pipeline = [pipeline[0], pipeline[1], pipeline[3]]
    hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1,
                                 save_best='teacher/auc', rule='greater'),
                 logger=dict(type='LoggerHook', interval=1),
                 data_check=dict(type='TrainDataCheckHook'))
    if random_state:
        hooks['random_state'] = dict(type='RandomStateHook')
    return dict(
        default_scope='mmpretrain',
        work_dir=work_dir,
        model=dict(
            type='SemiClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5], std=[127.5], to_rgb=False),
            backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16, dropout=0.5),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=8),
            view_augment=dict(type='BatchViewAugment', translate=2, scale=0.1, noise_std=0.15),
            rampup_iters=5, consistency_weight=10.0),
        train_dataloader=dict(
            batch_size=8, num_workers=workers, persistent_workers=workers > 0,
            sampler=dict(type='LabelledUnlabelledSampler', num_labelled=4, num_unlabelled=4,
                         epoch_length=2),
            dataset=dict(type='ConcatDataset', datasets=[
                dict(type='BUSCropDataset', data_root=crop_root, ann_file='basic_train.json',
                     pipeline=pipeline),
                dict(type='BUSCropDataset', data_root=crop_root, ann_file='extended_train.json',
                     pipeline=pipeline)])),
        val_dataloader=dict(batch_size=8, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                            dataset=dict(type='BUSCropDataset', data_root=crop_root, ann_file='val.json',
                                         pipeline=val_pipeline, test_mode=True)),
        val_evaluator=[dict(type='BinaryDiagnosticMetric', prefix='teacher')],
        val_cfg=dict(),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=0.003)),
        custom_hooks=[dict(type='MeanTeacherHook', buffer_policy='skip')],
        default_hooks=hooks,
        randomness=dict(seed=0),
        log_level='WARNING',
        resume=resume,
    )
