# Paper schedule of the recognition network: Adam, lr 0.003 (constant), 40,000 iterations, keep the best model
# on validation, stop after 5 validation epochs without improvement.
# One "epoch" = LabelledUnlabelledSampler.epoch_length = 100 iterations (set in the dataset configs), so
# 400 epochs = 40,000 iterations and the early stop fires after 500 iterations without a better val AUC.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=0.003, betas=(0.9, 0.999)))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=400, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# mmengine's EarlyStoppingHook defaults to min_delta=0.1 (too coarse for AUC): set explicitly.
early_stopping = dict(type='EarlyStoppingHook', monitor='diag/auc', rule='greater', patience=5, min_delta=0.001)
custom_hooks = [early_stopping]
auto_scale_lr = dict(base_batch_size=128, enable=False)
