# The BUS-BRA stage-2 learning curve: the mean teacher and its supervised twin at 5, 10, 15 and 30 % of the 1312
# basic + extended-train crops labelled (the rest unlabelled), three labelled draws at each share, supervised-all
# (every label) as the ceiling; busbra_stage2's data, split, crops and validation-selected settings, tested on the
# same 375 test crops (DeLong 95 % CIs, paired DeLong tests against supervised-basic on each draw). The 5 % runs
# are busbra_stage2's (the same draws and seeds give the same numbers).
#   python tools/run_study.py configs/studies/busbra_stage2_learning_curve.py --jobs 2 \
#       --cfg-options data.root=/data/BUS-BRA/BUSBRA
_base_ = ['./busbra_stage2.py']
name = 'busbra_stage2_learning_curve'
work_dir = 'work_dirs/busbra_stage2_learning_curve'
# As run: the cpu-quick views before zoom and contrast were added (chosen afterwards on validation crops,
# busbra_stage2_selection_views.py); these overrides reproduce the figures reported from this spec.
_mt_views = {'model.view_augment.zoom': 0.0, 'model.view_augment.contrast': 0.0}
_sup_views = {'model.data_preprocessor.batch_augments.augments.zoom': 0.0,
              'model.data_preprocessor.batch_augments.augments.contrast': 0.0}
methods = dict(_delete_=True,
               mean_teacher=dict(overrides=_mt_views),
               supervised_basic=dict(overrides=_sup_views),
               supervised_all=dict(overrides=_sup_views))
# supervised-all does not depend on the share: run beside the 5 % point
grid = [dict(labelled_share=[0.05, 0.10, 0.15, 0.30], seed=[0, 1, 2], methods=['mean_teacher', 'supervised_basic']),
        dict(labelled_share=[0.05], seed=[0, 1, 2], methods=['supervised_all'])]
# every run against the share first (the plot: mean +- sd of the three draws), then each share over its three draws
# (mean, sd, paired tests)
report = dict(_delete_=True, type='comparison', baseline='supervised_basic', x='labelled_share',
              title='BUS-BRA stage 2: test AUC against the labelled share (three draws at each share)',
              curves=[dict(name='share5', x='seed', where=dict(labelled_share=0.05), title='5 % labelled: three draws'),
                      dict(name='share10', x='seed', where=dict(labelled_share=0.10),
                           title='10 % labelled: three draws'),
                      dict(name='share15', x='seed', where=dict(labelled_share=0.15),
                           title='15 % labelled: three draws'),
                      dict(name='share30', x='seed', where=dict(labelled_share=0.30),
                           title='30 % labelled: three draws')])
