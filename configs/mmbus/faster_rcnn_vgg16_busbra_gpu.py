# The BUS-BRA detector at GPU size, from scratch (no ImageNet weights): faster_rcnn_vgg16_busbra_cpu_quick.py
# with the paper's 4096-d FCs and 128 sampled RoIs per image, a 400 px long side (BUS-BRA's own size), anchors
# fitted to its nodules at that size, batches of 8 with float16 autocast, 6,000 iterations.
# How the settings were found: docs/notes/2026-12-04-config-settings.md.
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

# the cpu-quick pipelines (scale jitter, flip, photometric) at this scale
train_pipeline = [dict(t, scale=img_scale) if 'scale' in t else t for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=img_scale) if 'scale' in t else t for t in _base_.test_pipeline]
train_dataloader = dict(batch_size=8, num_workers=4, persistent_workers=True, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=2, persistent_workers=True, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(batch_size=8, num_workers=2, persistent_workers=True, dataset=dict(pipeline=test_pipeline))

train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
# batch 8 with BatchNorm: lr 0.02 (half the linear scaling of the cpu-quick 0.01 at batch 2). float16, not
# bfloat16: mmcv 2.1.0's CUDA RoIAlign and NMS kernels take float32 and float16 only, and autocast hands them
# the backbone's dtype (mmdet casts the RoIs to the features' type); the dynamic loss scale guards float16.
optim_wrapper = dict(type='AutoAmpOptimWrapper', dtype='float16', loss_scale='dynamic', optimizer=dict(lr=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=2e-4, by_epoch=False, begin=0, end=max_iters),
]
# the cpu-quick selection; early stop after 2000 iterations without a gain
custom_hooks = [dict(h, patience_iters=2000) if 'patience_iters' in h else h for h in _base_.custom_hooks]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=val_interval))
log_processor = dict(window_size=50)
