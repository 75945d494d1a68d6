# The BUS-BRA detector at GPU size, from scratch (no ImageNet weights): the paper's VGG16 Faster R-CNN with
# its 4096-d FCs and 128 sampled RoIs per image, BatchNorm in the backbone (what lets a random VGG16 converge),
# BUS-BRA's images at their own size (long side 400 px), anchors fitted to its nodules,
# flip + scale jitter + photometric augmentation, batches of 8 with bf16 autocast, 6,000 iterations.
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_busbra_gpu.py
#   bash tools/dist_train.sh configs/mmbus/faster_rcnn_vgg16_busbra_gpu.py 1     # torchrun, nccl
# Data: as faster_rcnn_vgg16_busbra_cpu_quick.py (the converter's annotations under its data_root).
_base_ = ['./faster_rcnn_vgg16_busbra_cpu_quick.py']

img_scale = (400, 400)
max_iters = 6000
val_interval = 200

model = dict(
    # base sizes 48 / 96 / 192 px (x stride 16) span the nodules at this scale (~50-240 px)
    rpn_head=dict(anchor_generator=dict(scales=[3, 6, 12])),
    roi_head=dict(bbox_head=dict(fc_out_channels=4096)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=128))))

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PhotoMetricDistortion', brightness_delta=24, contrast_range=(0.75, 1.25),
         saturation_range=(1.0, 1.0), hue_delta=0),
    dict(type='PackDetInputs', meta_keys={{_base_.bus_meta_keys}}),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys={{_base_.bus_meta_keys}}),
]
train_dataloader = dict(batch_size=8, num_workers=4, persistent_workers=True, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=2, persistent_workers=True, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(batch_size=8, num_workers=2, persistent_workers=True, dataset=dict(pipeline=test_pipeline))

train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
# batch 8 with BatchNorm: lr 0.02 (half the linear scaling of the cpu-quick 0.01 at batch 2)
optim_wrapper = dict(type='AutoAmpOptimWrapper', dtype='bfloat16', optimizer=dict(lr=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=2e-4, by_epoch=False, begin=0, end=max_iters),
]
custom_hooks = [
    dict(type='TwoPhaseFineTuneHook', freeze_iters=0),
    dict(type='SmoothedMetricHook', keys='bus_box/mean_iou', window=3),
    dict(type='IterPatienceEarlyStoppingHook', monitor='bus_box/mean_iou_smooth', rule='greater',
         patience_iters=2000, min_delta=0.002),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=val_interval, max_keep_ckpts=1, save_best='bus_box/mean_iou_smooth', rule='greater'))
log_processor = dict(window_size=50)
