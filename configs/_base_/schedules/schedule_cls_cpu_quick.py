# CPU schedule of the recognition network: schedule_cls_40k.py's Adam lr 0.003 annealed to 0 by a cosine over
# 40 epochs of 20 iterations (800 iterations; the semi-supervised configs set 80 epochs); the same selection,
# with an early stop after 400 iterations without improvement.
_base_ = ['./schedule_cls_40k.py']
max_epochs = 40
patience_iters = 400
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0,
                        convert_to_iter_based=True)]
custom_hooks = [dict(h, patience_iters=patience_iters) if 'patience_iters' in h else h
                for h in _base_.custom_hooks]
