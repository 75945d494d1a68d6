# The main job on a dataset of one's own: --cfg-options data.root=ROOT data.format={busi,busbra,generic}
# [data.external_root=ROOT_B data.external_format=...]. Without an external root only the internal test
# set is reported.
_base_ = ['./main_job_synthetic.py']
name = 'main_job_dataset'
work_dir = 'work_dirs/main_job_dataset'
data = dict(_delete_=True, type='dataset', root=None, format='busi', seed=0, balanced='basic_train,val')
# no titles: the report names the test sets after the data ('Internal test', data.external_title), not
# after the generated hospitals
test_sets = [dict(name='internal', crops='main', split='test'),
             dict(name='external', crops='main', split='test_external', needs='external')]
# the main job's targets were set for the generated hospitals; another dataset's report has none
report = dict(_delete_=True, type='paper')
