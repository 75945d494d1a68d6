# Learning curve on BUS-BRA ground-truth crops: test AUC of the mean teacher and supervised-basic as the
# labelled share of the basic + extended pool grows (patient-grouped, stratified, nested subsets; the
# rest is the mean teacher's unlabelled set). Validation and test crops are the same at every point.
_base_ = ['./busbra.py']
name = 'busbra_learning_curve'
work_dir = 'work_dirs/busbra_learning_curve'
detector = None
crops = dict(_delete_=True, gt=dict(boxes='ground_truth', external=False))
methods = dict(_delete_=True, mean_teacher=dict(),
               supervised_basic=dict())
grid = dict(labelled_share=[0.05, 0.10, 0.15, 0.30])
test_sets = [dict(name='gt', crops='gt', split='test', title='test crops from ground-truth boxes')]
report = dict(type='comparison', baseline='supervised_basic', x='labelled_share',
              title='BUS-BRA: AUC against the labelled share')
