# The paper's detector schedule: momentum SGD, lr 0.001 decaying exponentially, momentum 0.9,
# 70,000 iterations; VGG16 frozen for the first 5000 (TwoPhaseFineTuneHook in the model config).
max_iters = 70000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0005))
# "decreases exponentially": lr_t = 0.001 * gamma**t per iteration; gamma = 0.1**(1/70000)
# brings it to 0.0001 at the end (the paper gives no rate; one decade over the run is the
# usual Faster R-CNN range).
param_scheduler = [
    dict(type='ExponentialLR', gamma=0.1**(1 / max_iters), by_epoch=False, begin=0,
         end=max_iters),
]
auto_scale_lr = dict(enable=False, base_batch_size=1)
