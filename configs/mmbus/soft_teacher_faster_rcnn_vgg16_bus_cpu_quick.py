# CPU-quick SoftTeacher over the cpu-quick detector (soft_teacher_faster_rcnn_vgg16_bus.py explains the
# method): 2 labelled + 2 unlabelled images per iteration, epochs of one pass over basic-train, 5 epochs.
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py
#   python tools/train.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus_cpu_quick.py
#   python tools/test.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus_cpu_quick.py CKPT
# Same extra budget without pseudo-labels: add --cfg-options model.semi_train_cfg.unsup_weight=0 (and another
# --work-dir).
_base_ = ['./faster_rcnn_vgg16_bus_cpu_quick.py', '../_base_/models/gated_soft_teacher.py',
          '../_base_/datasets/semi_bus_detection.py']

load_from = 'work_dirs/faster_rcnn_vgg16_bus_cpu_quick/iter_240.pth'  # the supervised detector (must exist)

model = dict(_delete_=True, detector=_base_.model, **_base_.soft_teacher,
             data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                                    data_preprocessor=_base_.model.data_preprocessor))
train_dataloader = dict(
    batch_size=2 + 2, batch_sampler=None,
    sampler=dict(_delete_=True, **_base_.semi_sampler, num_labelled=2, num_unlabelled=2),
    dataset=dict(_delete_=True, **_base_.semi_dataset, labelled=_base_.train_dataloader.dataset,
                 img_scale=_base_.img_scale))

max_epochs = 5
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
# The cpu-quick detector's optimiser, restarted at its initial lr (0.01), one decade down over the run.
param_scheduler = [dict(type='ExponentialLR', gamma=0.1**(1 / max_epochs), by_epoch=True)]
default_hooks = dict(
    logger=dict(interval=10, log_metric_by_epoch=True),  # epoch-based: validations by epoch
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=1, save_best='bus_box/mean_iou', rule='greater'))
log_processor = dict(by_epoch=True)
custom_hooks = [
    # decay 0.99 (~100 iterations, the length of the run); BatchNorm statistics follow the student too.
    dict(type='mmdet.MeanTeacherHook', momentum=0.01, interval=1, skip_buffer=False),
    dict(type='EarlyStoppingHook', monitor='bus_box/mean_iou', rule='greater', patience=3, min_delta=0.001),
]
