# Paper Table 3, "semi-supervisor": mean teacher with the labelled basic-train crops and the unlabelled
# extended-train crops (64 + 64 per batch), Adam lr 0.003, 40k iterations, best teacher on the smoothed
# validation AUC, early stop after 500 iterations without improvement (not before the ramp-up ends).
_base_ = [
    '../_base_/models/mean_teacher_convnet.py', '../_base_/datasets/bus_crops_semi.py',
    '../_base_/schedules/schedule_cls_40k.py', '../_base_/default_runtime_cls.py'
]
default_hooks = dict(checkpoint=dict(save_best='teacher/auc_smooth'))
custom_hooks = [
    # teacher = EMA of the student; decay 0.99 during the consistency ramp-up, 0.999 after
    # (mmengine convention: momentum = 1 - decay). rampup_iters=None follows model.rampup_iters.
    dict(type='MeanTeacherHook', momentum=0.001, rampup_momentum=0.01, rampup_iters=None,
         buffer_policy='skip'),
    # the supervised runs' selection on the teacher's AUC; no early stop during the consistency ramp-up
    dict(type='SmoothedMetricHook', keys='teacher/auc', window={{_base_.smooth_window}}, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='teacher/auc_smooth', rule='greater',
         patience_iters={{_base_.patience_iters}}, begin_iters=10000, min_delta=0.001),
]
