"""tools/analysis/detector_results.py: a detector run's curve, test figures and cost from its work dir."""
import json
import os.path as osp
import runpy

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = runpy.run_path(osp.join(REPO, 'tools', 'analysis', 'detector_results.py'))


def _work_dir(tmp_path):
    wd = tmp_path / 'work'
    run = wd / '20260101_000000'
    (run / 'vis_data').mkdir(parents=True)
    (wd / 'det.py').write_text("train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=100)\n")
    recs = [dict(iter=50, loss=1.0), dict(step=0, **{'bus_box/mean_iou': 0.2}), dict(iter=150, loss=0.8),
            dict(step=0, **{'bus_box/mean_iou': 0.4}), dict(iter=300, loss=0.5),
            dict(step=0, **{'bus_box/mean_iou': 0.5})]
    (run / 'vis_data' / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in recs) + '\n')
    (run / '20260101_000000.log').write_text('2026/01/01 10:00:00 - mmengine - INFO - start\n'
                                             '2026/01/01 10:30:30 - mmengine - INFO - end\n')
    (wd / 'best_bus_box_mean_iou_smooth_iter_300.pth').write_bytes(b'')
    metrics = {'bus_box/mean_iou': 0.51, 'bus_box/std_iou': 0.2, 'bus_box/detected@0.5': 0.55,
               'bus_box/num_nodules': 375, 'coco/bbox_mAP_50': 0.6}
    (wd / 'test_metrics.json').write_text(json.dumps(metrics))
    return wd


def test_curve_figures_and_cost(tmp_path):
    wd = _work_dir(tmp_path)
    TOOL['main']([str(wd), str(wd / 'test_metrics.json'), '--name', 'det', '--out-dir', str(tmp_path / 'out'),
                  '--title', 'BUS-BRA detector'])
    res = json.loads((tmp_path / 'out' / 'det.json').read_text())
    # validations logged at "epoch" 0 are placed at k x val_interval: 100, 200, 300
    assert [v['iteration'] for v in res['validation']] == [100, 200, 300]
    assert [v['bus_box/mean_iou'] for v in res['validation']] == [0.2, 0.4, 0.5]
    assert res['selected_iteration'] == 300 and res['train_wall_s'] == 30 * 60 + 30
    md = (tmp_path / 'out' / 'det.md').read_text()
    assert '0.510 ± 0.200' in md and '55.0%' in md and '(30 min of training' in md
    assert (tmp_path / 'out' / 'det' / 'validation_curve.png').read_bytes()[:4] == b'\x89PNG'


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(SystemExit, match='is not a training work dir'):
        TOOL['main']([str(tmp_path / 'nope'), 'm.json', '--name', 'x'])
    wd = _work_dir(tmp_path)
    (wd / 'cls.json').write_text(json.dumps({'diag/auc': 0.8}))
    with pytest.raises(SystemExit, match='cls.json holds no bus_box/mean_iou'):
        TOOL['main']([str(wd), str(wd / 'cls.json'), '--name', 'x', '--out-dir', str(tmp_path / 'o')])
