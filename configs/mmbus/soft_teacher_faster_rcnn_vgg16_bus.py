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
# The other soft_teacher_* configs repeat the assembly below for their own detector (why: the header of
# configs/_base_/datasets/semi_bus_detection.py).
_base_ = ['./faster_rcnn_vgg16_bus.py', '../_base_/models/gated_soft_teacher.py',
          '../_base_/datasets/semi_bus_detection.py']

# The supervised detector's final checkpoint (or its best_*.pth): a plain FasterRCNN state dict, which
# SemiBaseDetector loads into the student and the teacher alike. Must exist: a semi-supervised run from
# random weights would learn from meaningless pseudo-boxes.
load_from = 'work_dirs/faster_rcnn_vgg16_bus/iter_70000.pth'

_base_.model.backbone.init_cfg = None  # the weights come from load_from, no ImageNet download
_base_.model.roi_head.bbox_head.init_cfg = None
detector = _base_.model
model = dict(_delete_=True, detector=detector, **_base_.soft_teacher,
             data_preprocessor=dict(type='MultiBranchDataPreprocessor', data_preprocessor=detector.data_preprocessor))
# Labelled images: exactly the supervised detector's training pipeline; unlabelled ones: its loading, no
# boxes, then the weak (teacher) and strong (student) views at its input size.
sup_pipeline = _base_.train_pipeline[:-1] + [
    dict(type='MultiBranch', branch_field=_base_.branch_field, sup=_base_.train_pipeline[-1])]
unsup_pipeline = [
    _base_.train_pipeline[0],
    dict(type='LoadEmptyAnnotations'),
    dict(type='MultiBranch', branch_field=_base_.branch_field,
         unsup_teacher=[dict(type='Resize', scale=_base_.img_scale, keep_ratio=True)] + _base_.weak_view,
         unsup_student=[dict(type='RandomResize', scale=_base_.img_scale, ratio_range=(0.8, 1.2),
                             keep_ratio=True)] + _base_.strong_view)]
labelled_dataset = dict(_base_.train_dataloader.dataset, pipeline=sup_pipeline)
unlabelled_dataset = dict(labelled_dataset, **_base_.unlabelled_split, pipeline=unsup_pipeline)
num_labelled, num_unlabelled = 1, 4  # one labelled image per iteration, as the supervised detector
train_dataloader = dict(
    batch_size=num_labelled + num_unlabelled,
    batch_sampler=None,  # no aspect-ratio grouping: every batch keeps its labelled/unlabelled composition
    sampler=dict(_delete_=True, type='LabelledUnlabelledDetSampler', num_labelled=num_labelled,
                 num_unlabelled=num_unlabelled, epoch_length='labelled'),
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[labelled_dataset, unlabelled_dataset]))

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
