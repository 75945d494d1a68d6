# Choosing the cpu-quick mean teacher's consistency weight w_max on BUS-BRA validation crops only (the test
# split is not touched): the busbra_stage2 split and 5 % labelled draw of seed 0, one run per weight.
#   python tools/run_study.py configs/studies/busbra_stage2_selection.py --jobs 2 --cfg-options data.root=...
# The selection criterion is the best smoothed validation AUC of each run (the report's convergence table).
_base_ = ['./busbra_stage2.py']
name = 'busbra_stage2_selection'
work_dir = 'work_dirs/busbra_stage2_selection'
grid = [{'labelled_share': [0.05], 'seed': [0], 'model.consistency_weight': [10.0, 50.0],
         'methods': ['mean_teacher']}]
test_sets = [dict(name='val', crops='gt', split='val', title='BUS-BRA validation crops')]
report = dict(_delete_=True, type='comparison', baseline='supervised_basic', x='model.consistency_weight',
              title='BUS-BRA, 5 % labelled: mean teacher consistency weight (validation only)')
