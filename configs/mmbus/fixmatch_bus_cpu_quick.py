# CPU-sized FixMatch: the cpu-quick mean teacher's network, crops, batches and schedule with FixMatch's loss.
_base_ = ['./mean_teacher_bus_cpu_quick.py']
model = dict(
    type='FixMatchClassifier', threshold=0.95, consistency_weight=1.0, rampup_iters=0,
    pseudo_label_from='student',
    view_augment=dict(_delete_=True, type='BatchViewAugment', translate=2, brightness=0.1, noise_std=0.05),
    strong_augment=dict(type='StrongViewAugment'))
# the teacher's batch-norm statistics averaged from the student's (it never runs in training); EMA decay 0.99
custom_hooks = [
    dict(type='MeanTeacherHook', momentum=0.01, rampup_momentum=0.01, rampup_iters=0, buffer_policy='average'),
    dict(type='SmoothedMetricHook', keys='teacher/auc', window={{_base_.smooth_window}}, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='teacher/auc_smooth', rule='greater',
         patience_iters={{_base_.patience_iters}}, begin_iters=200, min_delta=0.001),
]
