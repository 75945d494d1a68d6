# The CPU schedule of the BUS-BRA detector (no ImageNet weights, no GPU): the cpu-quick VGG16 Faster R-CNN
# with input size and anchors fitted to BUS-BRA's images and nodules, trained on basic-train boxes.
# How the settings were found: docs/notes/2026-12-04-config-settings.md.
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_busbra_cpu_quick.py
#   python tools/test.py configs/mmbus/faster_rcnn_vgg16_busbra_cpu_quick.py CKPT --show-dir vis
# Data: the annotations of tools/dataset_converters/bus_to_coco.py under data/BUS-BRA/BUSBRA/annotations/
# (see faster_rcnn_vgg16_busbra.py); elsewhere, override the folders (docs/results/busbra_stage1_cpu.md has the
# commands of its measured run, on the GPU kit's compact copy):
#   --cfg-options train_dataloader.dataset.data_root=R val_dataloader.dataset.data_root=R \
#     test_dataloader.dataset.data_root=R val_evaluator.0.ann_file=R/annotations/val.json \
#     test_evaluator.0.ann_file=R/annotations/test.json
_base_ = ['./faster_rcnn_vgg16_bus_cpu_quick.py']

data_root = 'data/BUS-BRA/BUSBRA/'
# long side 320 px: a BUS-BRA image becomes ~240 x 320, its nodules ~40-190 px (median ~110 x 70)
img_scale = (320, 320)
# 720 iterations of 2.6 s and 9 validations of about a minute: the run ends within 45 minutes on 2 cores
max_iters = 720
val_interval = 80

model = dict(
    # the paper's conv5_3 at stride 16 and 1024-d FCs (its images are larger than the synthetic ones)
    data_preprocessor=dict(pad_size_divisor=16),
    backbone=dict(num_stages=5, dilations=(1, 1, 1, 1, 1), out_indices=(4, )),
    # base sizes 40 / 80 / 160 px (x stride 16) cover the nodules at this scale; wide, flat ratios (h / w)
    rpn_head=dict(anchor_generator=dict(scales=[2.5, 5, 10], ratios=[0.5, 0.75, 1.0], strides=[16])),
    roi_head=dict(bbox_roi_extractor=dict(featmap_strides=[16]), bbox_head=dict(fc_out_channels=1024)))

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadAnnotations', with_bbox=True),
    # scale jitter +-20 %, horizontal flip only (up is the skin line), brightness / contrast of the scanner
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PhotoMetricDistortion', brightness_delta=24, contrast_range=(0.75, 1.25),
         saturation_range=(1.0, 1.0), hue_delta=0),
    dict(type='PackDetInputs', meta_keys={{_base_.bus_meta_keys}}),
]
test_pipeline = [dict(t, scale=img_scale) if 'scale' in t else t for t in _base_.test_pipeline]  # at this scale
# the converter's annotations/{basic_train,val,test}.json under BUS-BRA's data_root
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
val_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + 'annotations/val.json', metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
test_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + 'annotations/test.json', metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]

train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
# warm-up, then cosine decay to 1 % of lr 0.01 over the run
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-4, by_epoch=False, begin=0, end=max_iters),
]
# selection on the trailing mean of 3 validations' mean box IoU; stop after 200 iterations without a gain
custom_hooks = [
    dict(type='TwoPhaseFineTuneHook', freeze_iters=0),
    dict(type='SmoothedMetricHook', keys='bus_box/mean_iou', window=3),
    dict(type='IterPatienceEarlyStoppingHook', monitor='bus_box/mean_iou_smooth', rule='greater',
         patience_iters=200, min_delta=0.002),
]
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(interval=val_interval, max_keep_ckpts=1, save_best='bus_box/mean_iou_smooth',
                    rule='greater'))
