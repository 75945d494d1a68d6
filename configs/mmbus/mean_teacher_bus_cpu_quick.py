# CPU-sized mean teacher (minutes on one core): 1/4-width MTConvNet, 32 x 32 crops, 16 labelled + 16
# unlabelled per batch, 80 epochs x 20 iterations = 1600 iterations, consistency ramp-up over the first
# 400 (a quarter of the run, as the paper's 10k of 40k). Short-run adaptations (the paper's values assume
# 40k iterations): the EMA decay is 0.97 during the ramp-up and 0.99 after (0.999 would average over ~1000
# iterations, most of the run), and +-2 px random translations (as in the original mean teacher) in the
# views; the supervised cpu-quick baselines get the same augmentation. w_max = 50, the paper authors' value,
# chosen on BUS-BRA validation crops over 1 and 10 (configs/studies/busbra_stage2_selection.py).
_base_ = ['./mean_teacher_bus.py', '../_base_/datasets/bus_crops_cpu_quick.py']
widen_factor = 0.25
rampup_iters = 400
model = dict(backbone=dict(widen_factor=widen_factor), head=dict(in_channels=int(128 * widen_factor)),
             consistency_weight=50.0, rampup_iters=rampup_iters,
             view_augment=dict(translate=2))
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    sampler=dict(num_labelled=16, num_unlabelled=16, epoch_length=20),
    dataset=dict(datasets=[{{_base_.quick_basic_train}}, {{_base_.quick_extended_unlabelled}}]))
val_dataloader = {{_base_.quick_val_dataloader}}
test_dataloader = {{_base_.quick_test_dataloader}}
test_evaluator = [dict(type='BinaryDiagnosticMetric', prefix='teacher',
                       missed={{_base_.quick_test_missed}})]
train_cfg = {{_base_.quick_semi_train_cfg}}
param_scheduler = {{_base_.quick_semi_param_scheduler}}
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(save_best='teacher/auc_smooth'))
custom_hooks = [
    # momentum = 1 - decay (mmengine convention): decay 0.97 during the ramp-up, 0.99 after
    dict(type='MeanTeacherHook', momentum=0.01, rampup_momentum=0.03, rampup_iters=None, buffer_policy='skip'),
    # the same selection as the supervised runs; no early stop during the ramp-up
    dict(type='SmoothedMetricHook', keys='teacher/auc', window={{_base_.quick_smooth_window}}, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='teacher/auc_smooth', rule='greater',
         patience_iters={{_base_.quick_patience_iters}}, begin_iters=rampup_iters, min_delta=0.001),
]
