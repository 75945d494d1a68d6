# Supervised baseline (labelled basic-train crops, batches of 128) on the GPU schedule: the network and
# crops of mean_teacher_bus_gpu.py, 2,000 iterations, the same views, cosine decay and selection.
#   python tools/train.py configs/mmbus/supervised_basic_bus_gpu.py
_base_ = ['./supervised_basic_bus.py']
max_epochs = 40
model = dict(data_preprocessor=dict(batch_augments=dict(augments=dict(translate=4))))
train_dataloader = dict(num_workers=3, sampler=dict(epoch_length=50))
val_dataloader = dict(batch_size=256)
test_dataloader = dict(batch_size=256)
optim_wrapper = dict(type='AutoAmpOptimWrapper', dtype='bfloat16')
# the loader workers only read and letterbox crops (the random views are made on the batch, in the model), so
# their seeds draw nothing: keep them for the whole run rather than restart them at each 50-iteration epoch
default_hooks = dict(random_state=dict(reseed_workers=False))
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0,
                        convert_to_iter_based=True)]
# the paper config's selection; early stop after 1000 iterations without improvement
custom_hooks = [dict(h, patience_iters=1000) if 'patience_iters' in h else h for h in _base_.custom_hooks]
