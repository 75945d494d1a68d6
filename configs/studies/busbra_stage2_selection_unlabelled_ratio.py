# Choosing the cpu-quick mean teacher's unlabelled crops per batch on BUS-BRA validation crops only (the test
# split is not touched): 16 labelled + 16 unlabelled (the shipped setting) or 16 + 48, as semi-supervised
# methods commonly draw several unlabelled samples per labelled one. With 66 labelled crops a batch of 16 shows
# each of them every four iterations; more unlabelled crops per batch give the consistency cost more weight in
# each step without showing the labelled crops more often. The busbra_stage2 split, its three 5 % labelled
# draws, the mean teacher alone.
#   python tools/run_study.py configs/studies/busbra_stage2_selection_unlabelled_ratio.py --jobs 2 \
#       --cfg-options data.root=/data/BUS-BRA/BUSBRA
# The criterion is the best smoothed validation AUC of each run (the report's convergence table).
_base_ = ['./busbra_stage2.py']
name = 'busbra_stage2_selection_unlabelled_ratio'
work_dir = 'work_dirs/busbra_stage2_selection_unlabelled_ratio'
grid = [{'labelled_share': [0.05], 'seed': [0, 1, 2], 'train_dataloader.sampler.num_unlabelled': [n],
         'train_dataloader.batch_size': [16 + n], 'methods': ['mean_teacher']} for n in (16, 48)]
# As run: the cpu-quick views before zoom and contrast were added (chosen afterwards on validation crops,
# busbra_stage2_selection_views.py); these overrides reproduce the figures reported from this spec.
_mt_views = {'model.view_augment.zoom': 0.0, 'model.view_augment.contrast': 0.0}
methods = dict(_delete_=True, mean_teacher=dict(overrides=_mt_views))
test_sets = [dict(name='val', crops='gt', split='val', title='BUS-BRA validation crops')]
report = dict(_delete_=True, type='comparison', baseline='supervised_basic',
              x='train_dataloader.sampler.num_unlabelled',
              title='BUS-BRA, 5 % labelled: mean teacher with 16 or 48 unlabelled crops per batch (validation only)')
