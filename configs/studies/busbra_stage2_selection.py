# Choosing the cpu-quick mean teacher's consistency weight w_max on BUS-BRA validation crops only (the test
# split is not touched): the busbra_stage2 split and 5 % labelled draw of seed 0, one run per weight.
#   python tools/run_study.py configs/studies/busbra_stage2_selection.py --jobs 2 --cfg-options data.root=...
# The selection criterion is the best smoothed validation AUC of each run (the report's convergence table).
_base_ = ['./busbra_stage2.py']
name = 'busbra_stage2_selection'
work_dir = 'work_dirs/busbra_stage2_selection'
grid = [{'labelled_share': [0.05], 'seed': [0], 'model.consistency_weight': [10.0, 50.0],
         'methods': ['mean_teacher']}]
# As run: the cpu-quick views before zoom and contrast were added (chosen afterwards on validation crops,
# busbra_stage2_selection_views.py); these overrides reproduce the figures reported from this spec.
_mt_views = {'model.view_augment.zoom': 0.0, 'model.view_augment.contrast': 0.0}
methods = dict(_delete_=True, mean_teacher=dict(overrides=_mt_views))
test_sets = [dict(name='val', crops='gt', split='val', title='BUS-BRA validation crops')]
report = dict(_delete_=True, type='comparison', baseline='supervised_basic', x='model.consistency_weight',
              title='BUS-BRA, 5 % labelled: mean teacher consistency weight (validation only)')
