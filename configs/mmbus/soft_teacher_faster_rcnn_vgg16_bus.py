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
#   python -c "from mmbus.models.gated_soft_teacher import export_teacher_detector as e; e('CKPT', 'teacher.pth')"
_base_ = ['./faster_rcnn_vgg16_bus.py']
custom_imports = dict(imports=['mmbus.registry', 'mmbus.models.gated_soft_teacher'], allow_failed_imports=False)

# The supervised detector's final checkpoint (or its best_*.pth): a plain FasterRCNN state dict, which
# SemiBaseDetector loads into the student and the teacher alike. Must exist: a semi-supervised run from
# random weights would learn from meaningless pseudo-boxes.
load_from = 'work_dirs/faster_rcnn_vgg16_bus/iter_70000.pth'

detector = _base_.model
detector.backbone.init_cfg = None  # the weights come from load_from, no ImageNet download
detector.roi_head.bbox_head.init_cfg = None
model = dict(
    _delete_=True,
    type='GatedSoftTeacher',  # SoftTeacher; images without a confident pseudo-box add no loss
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor', data_preprocessor=detector.data_preprocessor),
    # SoftTeacher's published values; image_score_thr: see GatedSoftTeacher.
    semi_train_cfg=dict(
        freeze_teacher=True, sup_weight=1.0, unsup_weight=4.0, pseudo_label_initial_score_thr=0.5,
        rpn_pseudo_thr=0.9, cls_pseudo_thr=0.9, image_score_thr=0.9, reg_pseudo_thr=0.02, jitter_times=10,
        jitter_scale=0.06, min_pseudo_bbox_wh=(1e-2, 1e-2)),
    semi_test_cfg=dict(predict_on='teacher'))

img_scale = _base_.img_scale
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
# Unlabelled views carry no image-level label (no pathology): what the teacher and student may know.
unsup_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                   'homography_matrix')
# Labelled images: exactly the supervised detector's training pipeline.
sup_pipeline = _base_.train_pipeline[:-1] + [
    dict(type='MultiBranch', branch_field=branch_field, sup=_base_.train_pipeline[-1])]
weak_pipeline = [
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackDetInputs', meta_keys=unsup_meta_keys)]
# Ultrasound-safe strong view: horizontal flips only, rotations of a few degrees, monotone photometric jitter
# (a hypoechoic nodule stays darker than its surroundings: no solarize/posterize), cut-outs smaller than a
# nodule. mmdet's geometric transforms record the homography that maps the teacher's boxes onto this view.
strong_pipeline = [
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomOrder', transforms=[
        dict(type='RandAugment', aug_num=1, aug_space=[
            [dict(type=t, min_mag=0.6, max_mag=1.4)] for t in ('Brightness', 'Contrast', 'Sharpness')]
            + [[dict(type='AutoContrast')], [dict(type='Equalize')]]),
        dict(type='RandAugment', aug_num=1, aug_space=[
            [dict(type='TranslateX', max_mag=0.1)], [dict(type='TranslateY', max_mag=0.1)],
            [dict(type='Rotate', max_mag=5.0)]]),
    ]),
    dict(type='RandomErasing', n_patches=(1, 3), ratio=(0, 0.1)),
    dict(type='PackDetInputs', meta_keys=unsup_meta_keys)]
# LoadEmptyAnnotations: the boxes BUSDataset parses from extended_train.json never reach a data sample.
unsup_pipeline = [
    _base_.train_pipeline[0],
    dict(type='LoadEmptyAnnotations'),
    dict(type='MultiBranch', branch_field=branch_field, unsup_teacher=weak_pipeline,
         unsup_student=strong_pipeline)]

labelled_dataset = _base_.train_dataloader.dataset
labelled_dataset.pipeline = sup_pipeline
unlabelled_dataset = dict(
    labelled_dataset,
    ann_file='annotations/extended_train.json',
    # filter_empty_gt=False: which unlabelled images train must not depend on their hidden boxes.
    filter_cfg=dict(filter_empty_gt=False, min_size=32),
    pipeline=unsup_pipeline)
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
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=2, save_best='bus_box/mean_iou', rule='greater'))
log_processor = dict(by_epoch=True)
custom_hooks = [
    # teacher = EMA of the student (momentum = 1 - decay); copies the student at iteration 0 only.
    dict(type='mmdet.MeanTeacherHook', momentum=0.001, interval=1),
    dict(type='EarlyStoppingHook', monitor='bus_box/mean_iou', rule='greater', patience=5, min_delta=0.001),
]
