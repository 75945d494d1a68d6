"""tools/gpu/collect_results.py on a small fake kit tarball: detector rows with known metrics, a detector's
training curve, a comparison report made by the real report function from tiny stage-2 rows, and the bad
inputs (not a tarball, no kit.json, no main run)."""
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from mmengine.config import Config

from mmbus.evaluation.binary_diagnostic_metric import delong_auc
from mmbus.reporting.comparison import comparison_report
from mmbus.reporting.gpu_kit import write_compact_scores
from mmbus.study.engine import Study
from mmbus.reporting import gpu_results
from mmbus.reporting.gpu_results import curve_from_log, curve_from_scalars, detector_targets, two_stage_targets

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'gpu'))
import collect_results  # noqa: E402

COMMIT = '0123456789abcdef0123456789abcdef01234567'
FAR = '/far/away/machine/out/work/main'  # where the study ran: must not reach the written files
SPEC = dict(name='busbra_gpu', schedule='paper', data=dict(type='coco', root='kit/busbra'),
            detector=dict(config='configs/mmbus/faster_rcnn_vgg16_busbra_gpu.py'),
            detectors=dict(soft_teacher=dict(config='configs/mmbus/soft_teacher_faster_rcnn_vgg16_busbra_gpu.py',
                                             init='detector')),
            methods=['mean_teacher', 'supervised_basic'], grid=dict(seed=[0, 1]),
            test_sets=[dict(name='gt', crops='gt', split='test'), dict(name='det', crops='det', split='test')],
            report=dict(type='comparison', baseline='supervised_basic', x='seed', title='Tiny comparison',
                        targets=dict(test_set='gt', ssl=['mean_teacher'], gain=0.05)))


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def det_row(iou, ap50):
    return dict(kind='detector', method=None, test_set='internal', grid={}, train_s=100.0,
                predictions='eval/x/predictions.pkl',
                metrics={'bus_box/mean_iou': iou, 'bus_box/std_iou': 0.1, 'bus_box/detected@0.5': 0.9,
                         'bus_box/froc_sens@0.5fp': 0.8, 'bus_box/froc_sens@1fp': 0.85, 'bus_box/froc_sens@2fp': 0.9,
                         'bus_box/froc_sens@4fp': 0.95, 'coco/bbox_mAP': 0.5, 'coco/bbox_mAP_50': ap50,
                         'coco/bbox_mAP_75': 0.4})


def make_work(work, sup=(0.70, 0.88), semi=(0.72, 0.91), skip_row=None, device_report=True):
    """A study work dir as the GPU kit packs it (two detectors, two stage-2 methods x two seeds x two crop sets,
    the comparison report written by the real report code; with ``device_report=False``, as a device whose
    report stage did not finish packs it: no report, each test's scores file and no pickle)."""
    from mmengine.fileio import dump
    for name, (iou, ap50) in (('detector', sup), ('soft_teacher', semi)):
        row = det_row(iou, ap50)
        row['method'] = name
        write(work / 'rows' / f"{'detector' if name == 'detector' else 'det-' + name}_internal.json", row)
    # the supervised detector's curve: iteration loop, validations logged with step 0 (log_metric_by_epoch)
    write(work / 'configs' / 'detector.py', 'train_cfg = dict(type="IterBasedTrainLoop", max_iters=300, '
                                            'val_interval=100)\n')
    recs = []
    for k, iou in enumerate((0.5, 0.6, 0.7), 1):
        recs += [dict(loss=1.0 / k, iter=100 * k - 50, step=100 * k - 50),
                 {'bus_box/mean_iou': iou, 'coco/bbox_mAP_50': iou + 0.1, 'step': 0}]
    write(work / 'detector' / '20260101_000000' / 'vis_data' / 'scalars.json', ''.join(json.dumps(r) + '\n'
                                                                                       for r in recs))
    # stage 2: 12 test crops; the mean teacher separates the classes better than the baseline, detector crops worse
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 6)
    for seed in (0, 1):
        for m, sep in (('mean_teacher', 0.6), ('supervised_basic', 0.3)):
            for ts, shift in (('gt', 0.0), ('det', 0.25)):
                p = np.clip(0.5 + (sep - shift) * (y - 0.5) + rng.normal(0, 0.2, len(y)), 0.01, 0.99)
                base = f'runs/seed{seed}/{m}/test_{ts}'
                dump([dict(pred_score=[1 - s, s], gt_label=[int(t)], img_path=f'c{i}.png')
                      for i, (s, t) in enumerate(zip(p, y))], str(work / base / 'predictions.pkl'))
                write(work / 'crops' / ts / 'test.json',
                      dict(data_list=[dict(img_path=f'c{i}.png', image_id=i) for i in range(len(y))]))
                if ts == 'det':  # the detector missed two nodules: wrong answers in the paired tests
                    write(work / 'crops' / ts / 'test_missed.json', [dict(id=100, true_label=1),
                                                                     dict(id=101, true_label=0)])
                rid = f'seed{seed}_{m}_{ts}'
                if rid == skip_row:
                    continue
                write(work / 'rows' / f'{rid}.json', dict(
                    kind='classifier', method=m, grid=dict(seed=seed), gid=f'seed{seed}', test_set=ts,
                    metrics=dict(auc=float(delong_auc(p, y)[0]), num_samples=12.0),
                    predictions=f'{base}/predictions.pkl', crops=f'crops/{ts}/test.json',
                    missed=f'crops/{ts}/test_missed.json', train_s=10.0))
    study = Study(Config(SPEC), str(work))
    if not device_report:
        study.write_report_context()
        assert write_compact_scores(str(work)) == len(list((work / 'rows').glob('seed*.json')))
        for pkl in work.rglob('*.pkl'):
            pkl.unlink()
        shutil.rmtree(work / 'crops')  # the kit packs no crops: the misses travel in the scores files
        Config(SPEC).dump(str(work / 'study_spec.py'))
        return
    rep, md = comparison_report(study)
    md += ['## Commands\n', '```bash', f'env PYTHON=/opt/py/bin/python bash ./tools/dist_train.sh {FAR}/x.py', '```']
    write(work / 'report' / 'report.md', '\n'.join(md) + '\n')
    write(work / 'report' / 'report.json', json.dumps(rep, default=str))
    ran = (('train_detector', 200.0, 'detector'), ('train_seed0_mean_teacher', 50.0, 'runs/seed0/mean_teacher'))
    stages = {n: dict(status='done', wall_s=w, cmd=['python', 'tools/train.py', '--work-dir', f'{FAR}/{d}'])
              for n, w, d in ran}
    stages['report'] = dict(status='done', wall_s=1.0, cmd=None)
    write(work / 'study_state.json', dict(stages=stages))
    Config(SPEC).dump(str(work / 'study_spec.py'))


def pack(tmp_path, study_exit='0', main=True, smoke=True, kit=True, usage=None, **kw):
    src = tmp_path / 'src'
    if main:
        make_work(src / 'work' / 'main', **kw)
    if smoke:
        make_work(src / 'work' / 'smoke')
    tar = tmp_path / 'busbra_gpu.tar.gz'
    with tarfile.open(tar, 'w:gz') as t:
        if kit:
            data = json.dumps(dict(command='bash tools/gpu/run_busbra.sh --kit KIT --out OUT --schedule paper',
                                   commit=COMMIT, device='cuda', smoke_exit='0', study_exit=study_exit,
                                   budget_s=540, wall_s=530, finished='2026-12-04 12:00:00')).encode()
            info = tarfile.TarInfo('kit.json')
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if usage is not None:
            info = tarfile.TarInfo('gpu_usage.csv')
            info.size = len(usage.encode())
            t.addfile(info, io.BytesIO(usage.encode()))
        if (src / 'work').is_dir():
            t.add(src / 'work', arcname='work')
    return tar


def collect(tmp_path, tar, *extra):
    out = tmp_path / 'results'
    rc = collect_results.main([str(tar), '--out-dir', str(out), *extra])
    return rc, out


def test_values_targets_and_report(tmp_path):
    rc, out = collect(tmp_path, pack(tmp_path))
    assert rc == 0
    s = json.loads((out / 'busbra_gpu.json').read_text())
    md = (out / 'busbra_gpu.md').read_text()
    det = s['detectors']['detector']
    assert det['mean_iou'] == 0.70 and det['ap50'] == 0.88 and det['froc']['2fp'] == 0.9
    assert det['iterations'] == 300 and det['validations'] == 3  # from val_interval: steps were all 0
    assert s['kit']['commit'] == COMMIT
    t1 = s['targets']['stage1']
    assert t1['supervised_mean_iou']['met'] is False and t1['supervised_ap50']['met'] is False
    assert t1['semi_above_supervised_mean_iou']['met'] is True and t1['semi_above_supervised_ap50']['met'] is True
    # the report's numbers are copied: per draw AUCs and the paired tests of the mean teacher
    gt = s['stage2']['test_sets']['gt']
    assert len(gt['runs']) == 4 and {p['method'] for p in gt['paired']} == {'mean_teacher'}
    assert all(p['p_value'] is not None for p in gt['paired'])
    assert s['targets']['stage2']['best_ssl'] == 'mean_teacher'
    mt = s['two_stage']['mean_teacher']
    assert mt['draws'] == 2 and mt['diff'] == pytest.approx(mt['det'] - mt['gt']) and mt['det'] < mt['gt']
    assert s['targets']['two_stage']['methods']['mean_teacher']['met'] is (mt['gt'] - mt['det'] <= 0.03)
    assert not s['partial'] and s['missing'] == dict(detectors=[], stage2=[])
    assert COMMIT in md and 'PARTIAL' not in md and '**not met**' in md
    assert (out / 'busbra_gpu' / 'detector_curve_detector.png').stat().st_size > 1000
    assert (out / 'busbra_gpu' / 'roc_gt.png').is_file() and '](busbra_gpu/roc_gt.png)' in md
    # nothing of the machines: neither where it ran, nor where it was collected
    for text in (md, (out / 'busbra_gpu.json').read_text()):
        assert FAR not in text and '/opt/py' not in text and str(tmp_path) not in text
    assert sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) < 2_000_000


def test_supervised_target_met_and_partial_study(tmp_path):
    tar = pack(tmp_path, study_exit='124', sup=(0.80, 0.95), semi=(0.79, 0.96), skip_row='seed1_mean_teacher_det')
    rc, out = collect(tmp_path, tar, '--label', 'budget test')
    s = json.loads((out / 'busbra_gpu.json').read_text())
    t1 = s['targets']['stage1']
    assert t1['supervised_mean_iou']['met'] is True and t1['supervised_ap50']['met'] is True
    assert t1['semi_above_supervised_mean_iou']['met'] is False and t1['met'] is False
    assert s['partial'] and s['missing']['stage2'] == ['seed1_mean_teacher_det']
    md = (out / 'busbra_gpu.md').read_text()
    assert 'PARTIAL' in md and 'study exit 124' in md and 'seed1_mean_teacher_det' in md and 'budget test' in md


def test_report_drawn_here_from_each_tests_scores(tmp_path):
    """A tarball whose study stopped before its report, with each stage-2 test's scores in place of its pickle:
    the collector draws the report from them, and its numbers (AUCs, paired DeLong tests) are those of the
    report drawn on the device from the pickles."""
    (tmp_path / 'dev').mkdir()
    (tmp_path / 'here').mkdir()
    rc, out = collect(tmp_path / 'dev', pack(tmp_path / 'dev'))
    assert rc == 0
    tar = pack(tmp_path / 'here', device_report=False)
    names = members_of(tar)
    assert 'work/main/report/report.json' not in names
    assert not any(n.startswith('work/main/') and n.endswith('.pkl') for n in names)
    rc, out_here = collect(tmp_path / 'here', tar)
    assert rc == 0
    dev, here = (json.loads((o / 'busbra_gpu.json').read_text()) for o in (out, out_here))
    assert here['report_drawn_here'] == ['main'] and dev['report_drawn_here'] == []
    assert not here['partial'], here['partial_why']
    for ts in ('gt', 'det'):
        a, b = dev['stage2']['test_sets'][ts], here['stage2']['test_sets'][ts]
        assert [r['auc'] for r in b['runs']] == pytest.approx([r['auc'] for r in a['runs']])
        assert [p['p_value'] for p in b['paired']] == pytest.approx([p['p_value'] for p in a['paired']])
        assert all(p['p_value'] is not None for p in b['paired'])
    assert here['two_stage'].keys() == dev['two_stage'].keys() and here['two_stage']
    keys = ('gt', 'det', 'diff')
    for m, t in dev['two_stage'].items():
        assert [here['two_stage'][m][k] for k in keys] == pytest.approx([t[k] for k in keys])
    assert 'was drawn where the results were collected' in (out_here / 'busbra_gpu.md').read_text()
    assert (out_here / 'busbra_gpu' / 'roc_gt.png').is_file()


def test_no_report_drawn_from_rows_without_scores(tmp_path, capsys):
    """A stage-2 row whose test came back with neither its pickle nor its scores would be tested on nothing
    (every target 'not met'): no report is drawn, the row is named, and the summary says there is none; a
    drawing that fails halfway leaves none of its figures behind."""
    from mmbus.reporting import gpu_kit
    tar = pack(tmp_path, device_report=False)
    with tarfile.open(tar) as t:
        names = [n for n in t.getnames() if not n.endswith('seed1/mean_teacher/test_det/predictions_scores.json')]
        t.extractall(tmp_path / 'x', members=[t.getmember(n) for n in names], filter='data')
    work = tmp_path / 'x' / 'work' / 'main'
    assert gpu_kit.rows_without_scores(str(work)) == ['seed1_mean_teacher_det']
    assert gpu_kit.draw_missing_report(str(work)) is False
    assert 'no report drawn for main: 1 stage-2 row(s)' in capsys.readouterr().out
    assert not (work / 'report').exists()

    write(work / 'runs' / 'seed1' / 'mean_teacher' / 'test_det' / 'predictions_scores.json',
          (tmp_path / 'src' / 'work' / 'main' / 'runs' / 'seed1' / 'mean_teacher' / 'test_det' /
           'predictions_scores.json').read_text())
    (work / 'report').mkdir()
    (work / 'report' / 'from_the_device.md').write_text('kept')

    def half_a_report(w):
        (work / 'report' / 'roc_gt.png').write_bytes(b'png')
        raise RuntimeError('drawing failed')

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr('mmbus.reporting.report.make_report', half_a_report)
        assert gpu_kit.draw_missing_report(str(work)) is False
    assert 'could not be drawn here: RuntimeError: drawing failed' in capsys.readouterr().out
    assert sorted(os.listdir(work / 'report')) == ['from_the_device.md']
    assert gpu_kit.draw_missing_report(str(work)) is True and (work / 'report' / 'report.json').is_file()


def members_of(tar):
    with tarfile.open(tar) as t:
        return t.getnames()


def test_target_functions_by_hand():
    t = detector_targets(dict(detector=dict(mean_iou=0.75, ap50=0.9), soft_teacher=dict(mean_iou=0.76, ap50=None)))
    assert t['supervised_mean_iou']['met'] and t['supervised_ap50']['met']
    assert t['semi_above_supervised_ap50']['met'] is None and t['met'] is None  # not measured is not met
    t = two_stage_targets(dict(a=dict(gt=0.80, det=0.77, diff=-0.03), b=dict(gt=0.80, det=0.76, diff=-0.04)))
    assert t['methods']['a']['met'] and not t['methods']['b']['met'] and t['met'] is False


def test_curves_from_scalars_and_log(tmp_path):
    f = tmp_path / 'scalars.json'
    f.write_text('{"loss": 1, "iter": 50}\n{"bus_box/mean_iou": 0.2, "step": 0}\n'
                 '{"loss": 1, "iter": 100}\n{"bus_box/mean_iou": 0.3, "step": 0}\n')
    assert [it for it, _ in curve_from_scalars([str(f)])] == [50, 100]  # no interval: the last training record
    assert [it for it, _ in curve_from_scalars([str(f)], 60, 100)] == [60, 100]  # the last one at max_iters
    log = tmp_path / 'train.log'
    log.write_text('x - INFO - Iter(train) [ 50/200]  loss: 1.0\nx - INFO - Saving checkpoint at 100 iterations\n'
                   'x - INFO - Iter(val) [2/2]    coco/bbox_mAP_50: 0.5000  bus_box/mean_iou: 0.4321  time: 1.0\n')
    assert curve_from_log(str(log)) == [(100, {'coco/bbox_mAP_50': 0.5, 'bus_box/mean_iou': 0.4321})]


def test_no_main_run_uses_the_smoke_pass(tmp_path, capsys):
    rc, out = collect(tmp_path, pack(tmp_path, main=False, study_exit='skipped'))
    assert rc == 1 and 'busbra_gpu.tar.gz holds no rows of the main run' in capsys.readouterr().err
    md = (out / 'busbra_gpu.md').read_text()
    assert '# NO MAIN RUN' in md and 'smoke pass' in md
    assert json.loads((out / 'busbra_gpu.json').read_text())['no_main_run'] is True


def test_bad_inputs_name_the_file(tmp_path):
    text = tmp_path / 'notes.tar.gz'
    text.write_text('not an archive\n')
    res = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'gpu', 'collect_results.py'), str(text),
                          '--out-dir', str(tmp_path / 'r')], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and f'{text} is not a tar archive' in res.stderr
    assert not (tmp_path / 'r').exists()
    tar = pack(tmp_path, kit=False, main=False, smoke=False)
    with tarfile.open(tar, 'w:gz') as t:
        t.add(text, arcname='work/main/rows/x.json')
    rc, out = collect(tmp_path, tar)
    assert rc == 2 and not out.exists()


def test_no_kit_json_message(tmp_path, capsys):
    tar = tmp_path / 'busbra_gpu.tar.gz'
    with tarfile.open(tar, 'w:gz') as t:
        t.addfile(tarfile.TarInfo('work/main/rows/x.json'), io.BytesIO(b''))
    assert collect(tmp_path, tar)[0] == 2
    assert f'{tar} holds no kit.json' in capsys.readouterr().err


def test_plain_work_dir(tmp_path):
    make_work(tmp_path / 'w')
    out = tmp_path / 'results'
    assert collect_results.main(['--work-dir', str(tmp_path / 'w'), '--out-dir', str(out), '--name', 'cpu']) == 0
    s = json.loads((out / 'cpu.json').read_text())
    assert s['kit'] is None and s['detectors']['soft_teacher']['mean_iou'] == 0.72
    assert str(tmp_path) not in (out / 'cpu.md').read_text()


def test_gpu_usage_sampled_through_the_run(tmp_path):
    """The sampler's lines (used MiB, total MiB, load %), one unreadable: peak 40960 of 81559 MiB (50 %), load
    (20 + 90 + 60) / 3 = 57 % on average, >= 50 % in 2 of 3 samples."""
    csv = '1000, 81559, 20\n40960, 81559, 90\n[N/A], 81559, [N/A]\n30720, 81559, 60\n30720, 815'
    u = gpu_results.gpu_usage(csv)
    assert u['samples'] == 3 and u['seconds'] == 30 and u['peak_mib'] == 40960 and u['total_mib'] == 81559
    assert u['peak_share'] == pytest.approx(40960 / 81559) and u['mean_load'] == pytest.approx(170 / 3)
    assert u['busy_share'] == pytest.approx(2 / 3)
    assert gpu_results.gpu_usage('') is None and gpu_results.gpu_usage('[N/A], [N/A], [N/A]') is None
    rc, out = collect(tmp_path, pack(tmp_path, usage=csv))
    assert rc == 0
    md = (out / 'busbra_gpu.md').read_text()
    assert '| GPU use | peak 40.0 of 79.6 GiB (50%); load 57 % on average, >= 50 % in 67% of 3 samples' in md
    assert json.loads((out / 'busbra_gpu.json').read_text())['gpu_usage']['peak_mib'] == 40960
    rc, out = collect(tmp_path / 'old', pack(tmp_path / 'old'))  # a tarball without the samples
    assert rc == 0 and '| GPU use | n/a (no samples' in (out / 'busbra_gpu.md').read_text()
