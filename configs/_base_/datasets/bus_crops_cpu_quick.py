# CPU-sized crop data settings: 32 x 32 px letterboxed crops. The *_cpu_quick.py configs plug these dataset
# dicts in (lists in mmengine configs are replaced, not merged, so the dicts are spelled out here once).
quick_crop_size = 32
quick_data_root = 'data/bus_synthetic/crops/'
quick_test_missed = quick_data_root + 'test_missed.json'  # detector misses, counted as failures
quick_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='LetterboxResize', size=quick_crop_size),
    dict(type='PackInputs'),
]
quick_basic_train = dict(type='BUSCropDataset', data_root=quick_data_root, ann_file='basic_train.json',
                         pipeline=quick_pipeline)
quick_extended_unlabelled = dict(type='BUSCropDataset', data_root=quick_data_root,
                                 ann_file='extended_train.json', pipeline=quick_pipeline)
quick_extended_labelled = dict(type='BUSCropDataset', data_root=quick_data_root,
                               ann_file='extended_train.json', use_hidden_labels=True, pipeline=quick_pipeline)
quick_val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=quick_data_root, pipeline=quick_pipeline))
quick_test_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=quick_data_root, pipeline=quick_pipeline))
# CPU schedules, counted in iterations (epochs of 20 iterations, set by the samplers' epoch_length):
# 800 for the supervised runs, 1600 for the semi-supervised ones (a mean teacher converges several times
# slower than its supervised twin); Adam lr 0.003 annealed to 0 by a cosine over the run.
quick_epoch_iters = 20
quick_train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=40, val_interval=1)
quick_semi_train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=80, val_interval=1)
quick_param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=40, eta_min=0.0,
                              convert_to_iter_based=True)]
quick_semi_param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=80, eta_min=0.0,
                                   convert_to_iter_based=True)]
# Selection, the same rule for every method: the checkpoint with the best validation AUC averaged over the
# last 5 validations (SmoothedMetricHook: a 188-crop validation AUC moves by +-0.05 from epoch to epoch; 0 until
# 5 validations exist, so no early chance peak is kept); early stop when that mean has not improved for 400
# iterations.
quick_smooth_window = 5
quick_patience_iters = 400
quick_supervised_hooks = [
    dict(type='SmoothedMetricHook', keys='diag/auc', window=quick_smooth_window, partial=0.0),
    dict(type='IterPatienceEarlyStoppingHook', monitor='diag/auc_smooth', rule='greater',
         patience_iters=quick_patience_iters, min_delta=0.001),
]
