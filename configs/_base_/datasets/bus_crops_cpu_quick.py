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
# CPU schedule: 25 epochs x 20 iterations = 500 iterations (epoch_length set in the samplers below)
quick_train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=25, val_interval=1)
# Early stopping keeps the paper's patience in iterations: 5 epochs x 100 iterations = 500 iterations =
# 25 of these 20-iteration epochs, i.e. the whole CPU run (the best checkpoint on validation AUC is still
# kept).
quick_patience = 25
# the supervised cpu-quick baselines' early stopping (the mean teacher monitors teacher/auc instead)
quick_supervised_hooks = [dict(type='EarlyStoppingHook', monitor='diag/auc', rule='greater',
                               patience=quick_patience, min_delta=0.001)]
