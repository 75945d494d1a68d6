# CPU-sized mean teacher (a few minutes on 2 cores): 1/4-width MTConvNet, 32 x 32 crops, 16 labelled +
# 16 unlabelled per batch, 25 epochs x 20 iterations = 500 iterations, consistency ramp-up over 100.
# Short-run adaptations (the paper's values assume 40k iterations): the EMA decay is 0.97 during the
# ramp-up and 0.99 after (0.999 would average over ~1000 iterations, longer than the run), w_max = 1, and
# +-2 px random translations (as in the original mean teacher) in the views; the supervised cpu-quick
# baselines get the same augmentation.
_base_ = ['./mean_teacher_bus.py', '../_base_/datasets/bus_crops_cpu_quick.py']
widen_factor = 0.25
model = dict(backbone=dict(widen_factor=widen_factor), head=dict(in_channels=int(128 * widen_factor)),
             consistency_weight=1.0, rampup_iters=100,
             view_augment=dict(translate=2))
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    sampler=dict(num_labelled=16, num_unlabelled=16, epoch_length=20),
    dataset=dict(datasets=[{{_base_.quick_basic_train}}, {{_base_.quick_extended_unlabelled}}]))
val_dataloader = {{_base_.quick_val_dataloader}}
test_dataloader = {{_base_.quick_test_dataloader}}
test_evaluator = [dict(type='BinaryDiagnosticMetric', prefix='teacher',
                       missed={{_base_.quick_test_missed}})]
train_cfg = {{_base_.quick_train_cfg}}
default_hooks = dict(logger=dict(interval=10))
custom_hooks = [
    # momentum = 1 - decay (mmengine convention): decay 0.97 during the ramp-up, 0.99 after
    dict(type='MeanTeacherHook', momentum=0.01, rampup_momentum=0.03, rampup_iters=None, buffer_policy='skip'),
    dict(type='EarlyStoppingHook', monitor='teacher/auc', rule='greater', patience={{_base_.quick_patience}},
         min_delta=0.001),
]
