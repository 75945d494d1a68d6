# Choosing the cpu-quick mean teacher's view augmentation on BUS-BRA validation crops only (the test split is
# not touched): the earlier views (h-flip, shifts of up to 2 px, brightness +-0.2, noise 0.15) or stronger
# ones that add an isotropic zoom of +-15 % and a contrast change of +-20 % (chosen: now the shipped views). The consistency cost asks the
# student to agree with the teacher across two views; views that differ only by a 2 px shift and noise may
# ask too little of it at 32 px, where a 2 px shift is 6 % of the crop. Zoom keeps the aspect ratio
# ("taller than wide" stays diagnostic) and no view flips vertically. The busbra_stage2 split, its three 5 %
# labelled draws, the mean teacher alone.
#   python tools/run_study.py configs/studies/busbra_stage2_selection_views.py --jobs 2 \
#       --cfg-options data.root=/data/BUS-BRA/BUSBRA
# The criterion is the best smoothed validation AUC of each run (the report's convergence table).
_base_ = ['./busbra_stage2.py']
name = 'busbra_stage2_selection_views'
work_dir = 'work_dirs/busbra_stage2_selection_views'
grid = [{'labelled_share': [0.05], 'seed': [0, 1, 2], 'model.view_augment.zoom': [zoom],
         'model.view_augment.contrast': [contrast], 'methods': ['mean_teacher']}
        for zoom, contrast in ((0.0, 0.0), (0.15, 0.2))]
# both arms set both keys (the grid's values win over these)
methods = dict(_delete_=True, mean_teacher=dict(overrides={'model.view_augment.zoom': 0.0,
                                                           'model.view_augment.contrast': 0.0}))
test_sets = [dict(name='val', crops='gt', split='val', title='BUS-BRA validation crops')]
report = dict(_delete_=True, type='comparison', baseline='supervised_basic', x='model.view_augment.zoom',
              title='BUS-BRA, 5 % labelled: mean teacher with the earlier or stronger views (validation only)')
