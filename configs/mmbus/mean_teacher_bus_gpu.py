# The paper's mean teacher (mean_teacher_bus.py) on a GPU schedule: 4,000 iterations (epochs of 50) with a cosine
# decay, consistency ramp-up over the first 1,000, bf16 autocast; no early stop during the ramp-up.
#   python tools/train.py configs/mmbus/mean_teacher_bus_gpu.py
_base_ = ['./mean_teacher_bus.py']
epoch_iters = 50
max_epochs = 80
rampup_iters = 1000
model = dict(rampup_iters=rampup_iters, view_augment=dict(translate=4))  # +-4 px at 64 px (+-2 at 32)
train_dataloader = dict(num_workers=3, sampler=dict(epoch_length=epoch_iters))
val_dataloader = dict(batch_size=256)
test_dataloader = dict(batch_size=256)
optim_wrapper = dict(type='AutoAmpOptimWrapper', dtype='bfloat16')
# the loader workers only read and letterbox crops (the random views are made on the batch, in the model), so
# their seeds draw nothing: keep them for the whole run rather than restart them at each 50-iteration epoch
default_hooks = dict(random_state=dict(reseed_workers=False))
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0,
                        convert_to_iter_based=True)]
custom_hooks = [
    # momentum = 1 - decay: 0.99 during the ramp-up, 0.995 after (0.999 would average over a quarter of the run)
    dict(type='MeanTeacherHook', momentum=0.005, rampup_momentum=0.01, rampup_iters=None, buffer_policy='skip'),
    dict(type='SmoothedMetricHook', keys='teacher/auc', window={{_base_.smooth_window}}, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='teacher/auc_smooth', rule='greater',
         patience_iters=1500, begin_iters=rampup_iters, min_delta=0.001),
]
