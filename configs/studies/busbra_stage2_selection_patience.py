# Choosing the cpu-quick mean teacher's early stop on BUS-BRA validation crops only (the test split is not
# touched): stop after 400 iterations without a gain of the smoothed validation AUC (the shipped setting), or
# train the whole 1600-iteration cosine schedule (patience as long as the schedule), so that the learning rate
# comes down before the run ends. The busbra_stage2 split, its three 5 % labelled draws, the mean teacher alone.
#   python tools/run_study.py configs/studies/busbra_stage2_selection_patience.py --jobs 2 \
#       --cfg-options data.root=/data/BUS-BRA/BUSBRA
# The criterion is the best smoothed validation AUC of each run (the report's convergence table), the one the
# runs select their checkpoints by. custom_hooks.2 is the mean teacher's IterPatienceEarlyStoppingHook.
_base_ = ['./busbra_stage2.py']
name = 'busbra_stage2_selection_patience'
work_dir = 'work_dirs/busbra_stage2_selection_patience'
grid = [{'labelled_share': [0.05], 'seed': [0, 1, 2], 'custom_hooks.2.patience_iters': [400, 1600],
         'methods': ['mean_teacher']}]
# As run: the cpu-quick views before zoom and contrast were added (chosen afterwards on validation crops,
# busbra_stage2_selection_views.py); these overrides reproduce the figures reported from this spec.
_mt_views = {'model.view_augment.zoom': 0.0, 'model.view_augment.contrast': 0.0}
methods = dict(_delete_=True, mean_teacher=dict(overrides=_mt_views))
test_sets = [dict(name='val', crops='gt', split='val', title='BUS-BRA validation crops')]
report = dict(_delete_=True, type='comparison', baseline='supervised_basic', x='custom_hooks.2.patience_iters',
              title='BUS-BRA, 5 % labelled: mean teacher early stop after 400 iterations or none (validation only)')
