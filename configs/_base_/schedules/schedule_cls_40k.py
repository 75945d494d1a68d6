# Paper schedule of the recognition network: Adam, lr 0.003 (constant), 40,000 iterations, keep the best model
# on the smoothed validation AUC, stop after 500 iterations without improvement (below).
# One "epoch" = LabelledUnlabelledSampler.epoch_length = 100 iterations (set in the dataset configs), so
# 400 epochs = 40,000 iterations.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=0.003, betas=(0.9, 0.999)))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=400, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# Selection, the same rule for every method: the checkpoint with the best validation AUC averaged over the
# last 5 validations (SmoothedMetricHook); the paper's early stop (5 epochs of 100 iterations without
# improvement) as 500 iterations without improvement of that mean. mmengine's min_delta default (0.1) is
# too coarse for an AUC: set explicitly. Configs select on '<monitor>_smooth' in default_hooks.checkpoint.
smooth_window = 5
patience_iters = 500
custom_hooks = [
    dict(type='SmoothedMetricHook', keys='diag/auc', window=smooth_window, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='diag/auc_smooth', rule='greater',
         patience_iters=patience_iters, min_delta=0.001),
]
