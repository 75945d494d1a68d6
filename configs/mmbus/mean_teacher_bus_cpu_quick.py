# CPU-sized mean teacher (minutes on one core): 1/4-width MTConvNet, 32 x 32 crops, 16 labelled + 16 unlabelled
# crops per batch, 80 epochs of 20 iterations, consistency ramp-up over the first 400 iterations.
# How the settings were found: docs/notes/2026-12-04-config-settings.md.
#   python tools/train.py configs/mmbus/mean_teacher_bus_cpu_quick.py
_base_ = [
    '../_base_/models/mean_teacher_convnet.py', '../_base_/datasets/bus_crops_cpu_quick.py',
    '../_base_/schedules/schedule_cls_cpu_quick.py', '../_base_/default_runtime_cls.py'
]
widen_factor = 0.25
rampup_iters = 400
max_epochs = 80
# views: +-2 px shifts, +-15 % zoom and +-20 % contrast on top of the base's flip, brightness and noise
# (chosen on BUS-BRA validation crops: configs/studies/busbra_stage2_selection_views.py)
model = dict(backbone=dict(widen_factor=widen_factor), head=dict(in_channels=int(128 * widen_factor)),
             rampup_iters=rampup_iters, view_augment=dict(translate=2, zoom=0.15, contrast=0.2))
# labelled basic-train crops + unlabelled extended-train crops (gt_label -1), as bus_crops_semi.py
num_labelled = 16
num_unlabelled = 16
train_dataloader = dict(
    batch_size=num_labelled + num_unlabelled,
    sampler=dict(num_labelled=num_labelled, num_unlabelled=num_unlabelled),
    dataset=dict(
        _delete_=True, type='ConcatDataset',
        datasets=[_base_.train_dataloader.dataset,
                  dict(_base_.train_dataloader.dataset, ann_file='extended_train.json')]))
# validation reports the teacher and the student (SemiClassifier.predict_student_too=True)
val_evaluator = [
    dict(type='BinaryDiagnosticMetric', prefix='teacher'),
    dict(type='BinaryDiagnosticMetric', prefix='student', score_key='student_pred_score'),
]
test_evaluator = [dict(type='BinaryDiagnosticMetric', prefix='teacher', missed={{_base_.test_missed}})]
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0,
                        convert_to_iter_based=True)]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(save_best='teacher/auc_smooth'))
custom_hooks = [
    # momentum = 1 - decay (mmengine convention): decay 0.97 during the ramp-up, 0.99 after
    dict(type='MeanTeacherHook', momentum=0.01, rampup_momentum=0.03, rampup_iters=None, buffer_policy='skip'),
    # the same selection as the supervised runs; no early stop during the ramp-up
    dict(type='SmoothedMetricHook', keys='teacher/auc', window={{_base_.smooth_window}}, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='teacher/auc_smooth', rule='greater',
         patience_iters={{_base_.patience_iters}}, begin_iters=rampup_iters, min_delta=0.001),
]
