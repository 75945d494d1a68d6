"""Pipeline orchestration: stage skipping/resuming, derived configs, and the
whole study at toy scale."""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

from mmbus.apis.pipeline import (Stage, StageFailed, fingerprint,
                                 rebase_data_root, run_stages,
                                 shorten_schedule)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# writes argv to <out>, appends a line to <count>; exits 3 when <fail> exists
SCRIPT = r"""
import json, os, sys
out, count, fail = sys.argv[1:4]
with open(count, 'a') as f:
    f.write('run\n')
if os.path.exists(fail):
    print('simulated crash: ' + fail)
    sys.exit(3)
with open(out, 'w') as f:
    json.dump(sys.argv[4:], f)
"""


def _stage(tmp, name='s', inputs=(), work_dir=None, extra=()):
    script = tmp / 'tool.py'
    script.write_text(SCRIPT)
    return Stage(name, [sys.executable, str(script), str(tmp / 'out.json'),
                        str(tmp / 'count.txt'), str(tmp / 'fail'), *extra],
                 inputs=list(inputs), outputs=[str(tmp / 'out.json')],
                 work_dir=work_dir)


def _runs(tmp):
    return len((tmp / 'count.txt').read_text().split())


def test_fingerprint(tmp_path):
    f = tmp_path / 'a.txt'
    f.write_text('x')
    fp = fingerprint(str(f))
    assert fp.startswith('sha256:')
    os.utime(f, (1, 1))  # content hash: mtime alone does not matter
    assert fingerprint(str(f)) == fp
    assert fingerprint(str(tmp_path / 'none')) == 'missing'
    d = fingerprint(str(tmp_path))
    (tmp_path / 'annotations').mkdir()  # converter output: ignored
    (tmp_path / 'annotations' / 'all.json').write_text('{}')
    assert fingerprint(str(tmp_path)) == d
    (tmp_path / 'b.png').write_text('y')
    assert fingerprint(str(tmp_path)) != d


def test_skip_rerun_on_change_and_force(tmp_path):
    inp = tmp_path / 'input.txt'
    inp.write_text('1')
    work = str(tmp_path / 'work')
    recs = run_stages([_stage(tmp_path, inputs=[str(inp)])], work)
    assert [r['status'] for r in recs] == ['ran'] and _runs(tmp_path) == 1
    recs = run_stages([_stage(tmp_path, inputs=[str(inp)])], work)
    assert [r['status'] for r in recs] == ['skipped'] and _runs(tmp_path) == 1
    inp.write_text('2')  # changed input -> rerun
    run_stages([_stage(tmp_path, inputs=[str(inp)])], work)
    assert _runs(tmp_path) == 2
    # changed command line -> rerun
    run_stages([_stage(tmp_path, inputs=[str(inp)], extra=['--x'])], work)
    assert _runs(tmp_path) == 3
    # deleted output -> rerun
    (tmp_path / 'out.json').unlink()
    run_stages([_stage(tmp_path, inputs=[str(inp)], extra=['--x'])], work)
    assert _runs(tmp_path) == 4
    run_stages([_stage(tmp_path, inputs=[str(inp)], extra=['--x'])], work,
               force=['s'])
    assert _runs(tmp_path) == 5
    state = json.load(open(osp.join(work, 'pipeline_state.json')))
    assert state['stages']['s']['status'] == 'done'


def test_failure_reports_log_tail_and_resume(tmp_path, capsys):
    work = str(tmp_path / 'work')
    train_dir = tmp_path / 'train'
    (tmp_path / 'fail').write_text('')
    st = _stage(tmp_path, work_dir=str(train_dir))
    # an interrupted training run leaves a checkpoint marker behind
    train_dir.mkdir()
    (train_dir / 'last_checkpoint').write_text(str(train_dir / 'iter_5.pth'))
    with pytest.raises(StageFailed, match='01_s.log'):
        run_stages([st], work)
    out = capsys.readouterr().out
    assert 'FAILED (exit status 3)' in out
    assert 'simulated crash' in out  # tail of the log
    state = json.load(open(osp.join(work, 'pipeline_state.json')))
    assert state['stages']['s']['status'] == 'failed'
    assert not (tmp_path / 'out.json').exists()
    # the first attempt had no earlier run with this key: its stale work dir
    # was cleared, so recreate the marker as the crashed run would have
    train_dir.mkdir(exist_ok=True)
    (train_dir / 'last_checkpoint').write_text(str(train_dir / 'iter_5.pth'))
    (tmp_path / 'fail').unlink()
    recs = run_stages([_stage(tmp_path, work_dir=str(train_dir))], work)
    assert recs[0]['status'] == 'ran'
    assert json.load(open(tmp_path / 'out.json')) == ['--resume']
    assert 'resuming from' in capsys.readouterr().out


def test_rebase_and_shorten_configs():
    cfg = dict(
        train_dataloader=dict(dataset=dict(
            type='ConcatDataset', datasets=[
                dict(data_root='data/crops/', ann_file='basic_train.json'),
                dict(data_root='data/crops/', ann_file='ext.json')]),
            sampler=dict(epoch_length=20)),
        test_evaluator=[dict(type='M', missed='data/crops/test_missed.json'),
                        dict(type='C', ann_file='other/x.json')],
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=25),
        default_hooks=dict(checkpoint=dict(interval=5), logger=dict(
            interval=10)),
        model=dict(rampup_iters=200))
    rebase_data_root(cfg, '/new/root')
    ds = cfg['train_dataloader']['dataset']['datasets']
    assert ds[0]['data_root'] == '/new/root/'
    assert ds[1]['ann_file'] == 'ext.json'
    assert cfg['test_evaluator'][0]['missed'] == \
        '/new/root/test_missed.json'
    assert cfg['test_evaluator'][1]['ann_file'] == 'other/x.json'
    shorten_schedule(cfg, 3)
    assert cfg['train_cfg']['max_epochs'] == 1
    assert cfg['train_dataloader']['sampler']['epoch_length'] == 3
    assert cfg['model']['rampup_iters'] == 1
    it = dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=240),
              default_hooks=dict(checkpoint=dict(interval=240)),
              param_scheduler=[dict(type='LinearLR', begin=0, end=20),
                               dict(type='ExponentialLR', begin=0,
                                    end=240)])
    shorten_schedule(it, 2)
    assert it['train_cfg']['max_iters'] == 2
    assert it['default_hooks']['checkpoint']['interval'] == 2
    assert [s['end'] for s in it['param_scheduler']] == [2, 2]


@pytest.mark.slow
def test_toy_study_end_to_end_and_rerun_skips(tmp_path):
    """The whole study (generation ... report) at toy scale through
    tools/run_pipeline.py, then a rerun that must skip every stage."""
    work = tmp_path / 'pipe'
    cmd = [sys.executable, osp.join(REPO, 'tools/run_pipeline.py'), '--toy',
           '--work-dir', str(work)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = work / 'report'
    for name in ('report.md', 'report.json', 'roc_curves.png',
                 'detections.png'):
        assert (report / name).stat().st_size > 0, name
    md = (report / 'report.md').read_text()
    for title in ('Table 1', 'Table 2', 'Table 3', 'Table 4', 'Mean teacher',
                  'Supervised, basic train', 'External test (hospital B)',
                  'make_synthetic_bus.py', 'tools/train.py', 'mmdet'):
        assert title in md, title
    rep = json.loads((report / 'report.json').read_text())
    t1 = rep['table1_splits']
    assert sum(t1[f'A/{s}']['images'] for s in
               ('basic_train', 'extended_train', 'val', 'test')) == 24
    assert t1['B/test']['images'] == 12
    # detector splits: one (top) crop per image or the image is listed as
    # missed, never dropped
    for key in ('A/extended_train', 'A/test', 'B/test'):
        assert t1[key]['crop_boxes'] == 'detector'
        assert t1[key]['crops'] + t1[key]['missed_by_detector'] == \
            t1[key]['images']
    for tset in ('internal', 'external'):
        for method in ('mean_teacher', 'supervised_basic', 'supervised_all'):
            m = rep['tables34_classification'][tset][method]
            assert any(k.endswith('/accuracy') for k in m), (tset, method)
    assert 'bus_box/mean_iou' in rep['table2_detection']['internal']
    assert (work / 'export' / 'teacher.pth').exists()

    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:]
    assert res.stdout.count('up to date, skipped') == 19
    assert '0 stage(s) ran' in res.stdout
    assert time.time() - t0 < 60
