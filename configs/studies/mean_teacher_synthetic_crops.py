# Mean teacher against supervised training on generated nodule crops, five labelled draws (seeds): 4
# labelled crops (2 + 2), 800 unlabelled, 200 validation, 400 test per seed; square crops with a x2
# brightness spread, views covering it (contrast +-50 %, brightness +-0.4) for every method, EMA decay
# 0.95, 60 epochs.
name = 'mean_teacher_synthetic_crops'
work_dir = 'work_dirs/mean_teacher_synthetic_crops'
schedule = 'cpu-quick'
data = dict(type='synthetic_crops', counts=dict(basic_train=4, extended_train=800, val=200, test=400),
            difficulty=0.7, framing='square', gain=2.0, balanced_basic=True)
_views = {'contrast': 0.5, 'brightness': 0.4, 'translate': 3, 'zoom': 0.15}
_epochs = {'train_cfg.max_epochs': 60}
_sup_views = {f'model.data_preprocessor.batch_augments.augments.{k}': v for k, v in _views.items()}
_sup_views.update(_epochs)
methods = dict(
    supervised_basic=dict(overrides=_sup_views),
    mean_teacher=dict(overrides={
        **{f'model.view_augment.{k}': v for k, v in _views.items()}, **_epochs,
        'model.consistency_weight': 10.0, 'model.consistency_on': 'all',
        'custom_hooks.0.momentum': 0.05, 'custom_hooks.0.rampup_momentum': 0.05}),
    supervised_all=dict(overrides=_sup_views))
grid = dict(seed=[0, 1, 2, 3, 4])
test_sets = [dict(name='test', crops='main', split='test', title='synthetic test crops')]
extras = ['orientation_auc', 'brightness_rho', 'labelled_crops']
report = dict(type='comparison', baseline='supervised_basic', x='seed',
              title='Mean teacher vs supervised on synthetic crops')
# a handful of toy crops is smaller than one batch's labelled share: repeats accepted on purpose
_methods = ('mean_teacher', 'fixmatch', 'supervised_basic', 'supervised_all')
toy = dict(data=dict(counts=dict(basic_train=4, extended_train=16, val=8, test=16)),
           classifier={'train_cfg.max_epochs': 1, 'train_dataloader.sampler.epoch_length': 2},
    methods={m: {'train_dataloader.sampler.allow_repeats': True} for m in _methods})
