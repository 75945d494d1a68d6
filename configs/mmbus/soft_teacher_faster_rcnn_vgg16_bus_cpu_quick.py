# CPU-quick SoftTeacher over the cpu-quick detector (soft_teacher_faster_rcnn_vgg16_bus.py explains the
# method): 2 labelled + 2 unlabelled images per iteration, epochs of one pass over basic-train, 5 epochs.
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py
#   python tools/train.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus_cpu_quick.py
#   python tools/test.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus_cpu_quick.py CKPT
# Same extra budget without pseudo-labels: add --cfg-options model.semi_train_cfg.unsup_weight=0 (and another
# --work-dir).
_base_ = ['./faster_rcnn_vgg16_bus_cpu_quick.py']
custom_imports = dict(imports=['mmbus.registry', 'mmbus.models.gated_soft_teacher'], allow_failed_imports=False)

load_from = 'work_dirs/faster_rcnn_vgg16_bus_cpu_quick/iter_240.pth'  # the supervised detector (must exist)

detector = _base_.model
model = dict(
    _delete_=True,
    type='GatedSoftTeacher',
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor', data_preprocessor=detector.data_preprocessor),
    semi_train_cfg=dict(
        freeze_teacher=True, sup_weight=1.0, unsup_weight=4.0, pseudo_label_initial_score_thr=0.5,
        rpn_pseudo_thr=0.9, cls_pseudo_thr=0.9, image_score_thr=0.9, reg_pseudo_thr=0.02, jitter_times=10,
        jitter_scale=0.06, min_pseudo_bbox_wh=(1e-2, 1e-2)),
    semi_test_cfg=dict(predict_on='teacher'))

img_scale = _base_.img_scale
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
unsup_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                   'homography_matrix')
sup_pipeline = _base_.train_pipeline[:-1] + [
    dict(type='MultiBranch', branch_field=branch_field, sup=_base_.train_pipeline[-1])]
weak_pipeline = [
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackDetInputs', meta_keys=unsup_meta_keys)]
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
unsup_pipeline = [
    _base_.train_pipeline[0],
    dict(type='LoadEmptyAnnotations'),
    dict(type='MultiBranch', branch_field=branch_field, unsup_teacher=weak_pipeline,
         unsup_student=strong_pipeline)]

labelled_dataset = _base_.train_dataloader.dataset
labelled_dataset.pipeline = sup_pipeline
unlabelled_dataset = dict(
    labelled_dataset, ann_file='annotations/extended_train.json',
    filter_cfg=dict(filter_empty_gt=False, min_size=32), pipeline=unsup_pipeline)
num_labelled, num_unlabelled = 2, 2
train_dataloader = dict(
    batch_size=num_labelled + num_unlabelled,
    batch_sampler=None,
    sampler=dict(_delete_=True, type='LabelledUnlabelledDetSampler', num_labelled=num_labelled,
                 num_unlabelled=num_unlabelled, epoch_length='labelled'),
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[labelled_dataset, unlabelled_dataset]))

max_epochs = 5
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
# The cpu-quick detector's optimiser, restarted at its initial lr (0.01), one decade down over the run.
param_scheduler = [dict(type='ExponentialLR', gamma=0.1**(1 / max_epochs), by_epoch=True)]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=1, save_best='bus_box/mean_iou', rule='greater'))
log_processor = dict(by_epoch=True)
custom_hooks = [
    # decay 0.99 (~100 iterations, the length of the run); BatchNorm statistics follow the student too.
    dict(type='mmdet.MeanTeacherHook', momentum=0.01, interval=1, skip_buffer=False),
    dict(type='EarlyStoppingHook', monitor='bus_box/mean_iou', rule='greater', patience=3, min_delta=0.001),
]
