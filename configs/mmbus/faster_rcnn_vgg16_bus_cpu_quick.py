# CPU-quick variant of the paper's detector, for the synthetic data and for smoke runs on a
# laptop (no GPU, no download): VGG16 up to conv4_3 (stride 8) with BatchNorm, the images at their own
# 256 px, 64 RoIs per image, 512-d FCs, no ImageNet weights, 240 iterations of 2 images.
# How the settings were found: docs/notes/2026-12-04-config-settings.md.
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py
_base_ = [
    '../_base_/models/faster_rcnn_vgg16.py',
    '../_base_/datasets/bus_detection.py',
    '../_base_/schedules/schedule_det_70k.py',
    '../_base_/default_runtime_det.py',
]

img_scale = (256, 256)  # (w, h) bound, aspect ratio kept: the synthetic images' own size
max_iters = 240

model = dict(
    # stride 8: the 28-125 px nodules of a 256 px image span 3.5-16 feature cells, as many as the paper's
    # stride 16 gives at an upscaled input, at a third of the cost (conv5 is dropped, not the resolution)
    data_preprocessor=dict(pad_size_divisor=8),
    backbone=dict(num_stages=4, dilations=(1, 1, 1, 1), out_indices=(3, ), with_last_pool=False,
                  norm_cfg=dict(_delete_=True, type='BN', requires_grad=True)),
    # anchor base sizes 32 / 64 / 128 px (scales 4 / 8 / 16 x stride 8) cover the nodules
    rpn_head=dict(feat_channels=256, anchor_generator=dict(scales=[4, 8, 16], strides=[8])),
    roi_head=dict(bbox_roi_extractor=dict(featmap_strides=[8]), bbox_head=dict(fc_out_channels=512)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=2000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackDetInputs', meta_keys={{_base_.bus_meta_keys}}),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys={{_base_.bus_meta_keys}}),
]
# Two cores: load in the main process (workers would fight the model for the CPU).
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(pipeline=test_pipeline))

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(lr=0.01, weight_decay=0.0001),
    clip_grad=dict(max_norm=10, norm_type=2))
# Short linear warm-up, then exponential decay (lr x0.1 over the run).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='ExponentialLR', gamma=0.1**(1 / max_iters), by_epoch=False, begin=0,
         end=max_iters),
]
# Random initialisation: freezing a random backbone would only slow learning, so the two-phase
# hook is kept (same code path as the paper's config) with no frozen phase.
custom_hooks = [dict(type='TwoPhaseFineTuneHook', freeze_iters=0)]
# A checkpoint every 20 iterations (~2-3 min on a slow 2-core CPU), so an interrupted run loses little on
# --resume. Two are kept: mmengine removes the oldest before writing the next, so with one a kill during a save
# would leave none intact.
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=20, max_keep_ckpts=2))
log_processor = dict(window_size=10)
