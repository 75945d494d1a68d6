# FixMatch beside the paper's mean teacher: labelled basic-train crops + unlabelled extended-train crops
# (64 + 64 per batch), weak view -> pseudo-label where its confidence reaches 0.95, strong view of the same
# crop trained on it (lambda_u = 1); predictions from the EMA teacher.
_base_ = ['./mean_teacher_bus.py']
model = dict(
    type='FixMatchClassifier', threshold=0.95, consistency_weight=1.0, rampup_iters=0,
    pseudo_label_from='student',
    # weak view: flip, +-2 px shifts, small brightness change, input noise
    view_augment=dict(type='BatchViewAugment', translate=2, brightness=0.1, noise_std=0.05),
    strong_augment=dict(type='StrongViewAugment'))
# The teacher never runs in training here (pseudo-labels come from the student), so its batch-norm statistics
# are averaged from the student's ('skip' would leave them at their initial values). Otherwise the mean
# teacher's hooks: EMA decay 0.999 (no ramp-up), the same validation selection.
custom_hooks = [
    dict(type='MeanTeacherHook', momentum=0.001, rampup_momentum=0.001, rampup_iters=0, buffer_policy='average'),
    dict(type='SmoothedMetricHook', keys='teacher/auc', window={{_base_.smooth_window}}, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='teacher/auc_smooth', rule='greater',
         patience_iters={{_base_.patience_iters}}, min_delta=0.001),
]
