# Semi-supervised stage 1: SoftTeacher (mmdet) over the paper's VGG16 Faster R-CNN, labelled basic-train +
# unlabelled extended-train images, student and EMA teacher both initialised from the supervised detector.
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_bus.py                 # the supervised detector
#   python tools/train.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus.py    # + 20 epochs semi-supervised
#   python tools/test.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus.py CKPT   # teacher's predictions
# Same extra budget, supervised: the same run with the pseudo-label losses switched off (same data order,
# schedule and EMA teacher, so only the unlabelled images differ), then compare both tests with the
# supervised detector's own test:
#   python tools/train.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus.py \
#       --cfg-options model.semi_train_cfg.unsup_weight=0 --work-dir work_dirs/soft_teacher_bus_unsup0
# Crop extraction (stage 2) takes the teacher as a plain detector, used with faster_rcnn_vgg16_bus.py:
#   python tools/export_teacher_detector.py CKPT teacher.pth
_base_ = ['./faster_rcnn_vgg16_bus.py', '../_base_/models/gated_soft_teacher.py',
          '../_base_/datasets/semi_bus_detection.py']

# The supervised detector's final checkpoint (or its best_*.pth): a plain FasterRCNN state dict, which
# SemiBaseDetector loads into the student and the teacher alike. Must exist: a semi-supervised run from
# random weights would learn from meaningless pseudo-boxes.
load_from = 'work_dirs/faster_rcnn_vgg16_bus/iter_70000.pth'

_base_.model.backbone.init_cfg = None  # the weights come from load_from, no ImageNet download
_base_.model.roi_head.bbox_head.init_cfg = None
model = dict(_delete_=True, detector=_base_.model, **_base_.soft_teacher,
             data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                                    data_preprocessor=_base_.model.data_preprocessor))
# One labelled image per iteration, as the supervised detector, and four unlabelled ones.
train_dataloader = dict(
    batch_size=1 + 4, batch_sampler=None,
    sampler=dict(_delete_=True, **_base_.semi_sampler, num_labelled=1, num_unlabelled=4),
    dataset=dict(_delete_=True, **_base_.semi_dataset, labelled=_base_.train_dataloader.dataset,
                 img_scale=_base_.img_scale))

# Epoch = one pass over basic-train (the sampler ends it), validated (teacher) after each epoch.
max_epochs = 20
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
# The supervised detector's optimiser, restarted at its initial lr (0.001), one decade down over the run.
param_scheduler = [dict(type='ExponentialLR', gamma=0.1**(1 / max_epochs), by_epoch=True)]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=True),  # epoch-based: validations by epoch
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=2, save_best='bus_box/mean_iou', rule='greater'))
log_processor = dict(by_epoch=True)
custom_hooks = [
    # teacher = EMA of the student (momentum = 1 - decay); copies the student at iteration 0 only.
    dict(type='mmdet.MeanTeacherHook', momentum=0.001, interval=1),
    dict(type='EarlyStoppingHook', monitor='bus_box/mean_iou', rule='greater', patience=5, min_delta=0.001),
]
