# Semi-supervised BUS-BRA detector at GPU size: GatedSoftTeacher over faster_rcnn_vgg16_busbra_gpu.py,
# labelled basic-train + unlabelled extended-train images (2 + 6 per batch), student and EMA teacher both
# started from the supervised detector (load_from, set by the study or on the command line).
#   python tools/train.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_busbra_gpu.py --cfg-options load_from=CKPT
# The semi-supervised parts are those of soft_teacher_faster_rcnn_vgg16_bus.py around this detector.
_base_ = ['./faster_rcnn_vgg16_busbra_gpu.py', '../_base_/models/gated_soft_teacher.py',
          '../_base_/datasets/semi_bus_detection.py']

load_from = 'work_dirs/faster_rcnn_vgg16_busbra_gpu/iter_6000.pth'  # the supervised detector (must exist)

model = dict(_delete_=True, detector=_base_.model, **_base_.soft_teacher,
             data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                                    data_preprocessor=_base_.model.data_preprocessor))
train_dataloader = dict(
    batch_size=2 + 6, batch_sampler=None,
    sampler=dict(_delete_=True, **_base_.semi_sampler, num_labelled=2, num_unlabelled=6),
    dataset=dict(_delete_=True, **_base_.semi_dataset, labelled=_base_.train_dataloader.dataset,
                 img_scale=_base_.img_scale))

# epochs of one pass over basic-train (~110 iterations of 2 labelled images), validated after each
max_epochs = 20
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
# restarted at a tenth of the supervised detector's lr, one decade down over the run
optim_wrapper = dict(optimizer=dict(lr=0.002))
param_scheduler = [dict(type='ExponentialLR', gamma=0.1**(1 / max_epochs), by_epoch=True)]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=True),  # epoch-based: validations by epoch
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=1, save_best='bus_box/mean_iou', rule='greater'))
log_processor = dict(by_epoch=True)
custom_hooks = [
    # decay 0.999; BatchNorm statistics follow the student too (the teacher's would stay at load_from's)
    dict(type='mmdet.MeanTeacherHook', momentum=0.001, interval=1, skip_buffer=False),
    dict(type='EarlyStoppingHook', monitor='bus_box/mean_iou', rule='greater', patience=5, min_delta=0.001),
]
