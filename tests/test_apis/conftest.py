"""Tiny detector / classifier configs with random weights, saved by the
tests themselves (no downloads)."""

import pytest
import torch

TINY_DET_CFG = """
default_scope = 'mmdet'
custom_imports = dict(imports=['mmbus'], allow_failed_imports=False)
model = dict(
    type='FasterRCNN',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0., 0., 0.],
                           std=[255., 255., 255.], bgr_to_rgb=True,
                           pad_size_divisor=16),
    backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8,
                  num_stages=4, out_indices=(3, ), norm_cfg=dict(type='BN'),
                  norm_eval=False, style='pytorch'),
    rpn_head=dict(
        type='RPNHead', in_channels=64, feat_channels=16,
        anchor_generator=dict(type='AnchorGenerator', scales=[2, 4],
                              ratios=[1.0], strides=[32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                        target_stds=[1.0] * 4),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True,
                      loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=64, featmap_strides=[32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead', in_channels=64, fc_out_channels=32,
            roi_feat_size=7, num_classes=1,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                          loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=None,
    test_cfg=dict(
        rpn=dict(nms_pre=100, max_per_img=20,
                 nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                  max_per_img=5)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor')),
]
test_dataloader = dict(batch_size=1, dataset=dict(
    type='CocoDataset', data_root='', ann_file='', pipeline=test_pipeline,
    metainfo=dict(classes=('nodule', ))))
"""

TINY_CLS_MODEL = """
dict(backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16,
                   dropout=0.0),
     head=dict(type='LinearClsHead', num_classes=2, in_channels=8,
               loss=dict(type='CrossEntropyLoss')),
     data_preprocessor=dict(mean=[127.5], std=[64.], to_rgb=False))
"""

TINY_CLS_CFG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmbus'], allow_failed_imports=False)
model = dict(type='{model_type}', **{model})
# grey crops, as the project's crop configs read them
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]
test_dataloader = dict(batch_size=2, dataset=dict(
    type='CustomDataset', data_root='', ann_file='', pipeline=test_pipeline))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=0.003))
custom_hooks = [dict(type='EMAHook')]
"""


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


@pytest.fixture(scope='session')
def tiny_detector(tmp_path_factory):
    """(config, checkpoint) of a random-weight tiny Faster R-CNN."""
    import mmbus.registry  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    d = tmp_path_factory.mktemp('tiny_det')
    cfg_path = _write(d / 'det.py', TINY_DET_CFG)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(Config.fromfile(cfg_path).model)
    ckpt = str(d / 'det.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('nodule', )))), ckpt)
    return cfg_path, ckpt


@pytest.fixture(scope='session')
def tiny_semi_classifier(tmp_path_factory):
    """(config, checkpoint, model) of a random-weight tiny SemiClassifier
    whose teacher differs from its student."""
    import mmbus.registry  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    d = tmp_path_factory.mktemp('tiny_cls')
    cfg_path = _write(
        d / 'semi.py',
        TINY_CLS_CFG.format(model_type='SemiClassifier',
                            model=TINY_CLS_MODEL.strip()))
    torch.manual_seed(0)
    cfg = Config.fromfile(cfg_path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    with torch.no_grad():  # make the teacher distinguishable
        for p in model.teacher.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    ckpt = str(d / 'semi.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return cfg_path, ckpt, model
