# FixMatch on the GPU schedule of mean_teacher_bus_gpu.py (same network, crops, batches and selection).
#   python tools/train.py configs/mmbus/fixmatch_bus_gpu.py
_base_ = ['./mean_teacher_bus_gpu.py']
model = dict(
    type='FixMatchClassifier', threshold=0.95, consistency_weight=1.0, rampup_iters=0,
    pseudo_label_from='student',
    view_augment=dict(_delete_=True, type='BatchViewAugment', translate=4, brightness=0.1, noise_std=0.05),
    strong_augment=dict(type='StrongViewAugment'))
custom_hooks = [
    # the teacher never runs in training: its batch-norm statistics are averaged from the student's
    dict(type='MeanTeacherHook', momentum=0.005, rampup_momentum=0.005, rampup_iters=0, buffer_policy='average'),
    dict(type='SmoothedMetricHook', keys='teacher/auc', window={{_base_.smooth_window}}, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='teacher/auc_smooth', rule='greater',
         patience_iters=1500, begin_iters=500, min_delta=0.001),
]
