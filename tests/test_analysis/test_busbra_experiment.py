"""BUS-BRA experiment helpers: config rewriting, detector boxes from a prediction pickle, tables,
targets and the report (synthetic inputs); the real-data split check skips without BUS-BRA."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbus.apis import busbra_experiment as be

REPO = Path(__file__).resolve().parents[2]
BUSBRA = Path(os.environ.get('MMBUS_BUSBRA',
                             Path(__file__).resolve().parents[3] / 'shared/data/BUS-BRA/BUSBRA'))


def _walk_roots(obj, out):
    if isinstance(obj, dict):
        if 'data_root' in obj:
            out.append(obj['data_root'])
        for v in obj.values():
            _walk_roots(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _walk_roots(v, out)
    return out


def test_classifier_config_retargets_every_dataset(tmp_path):
    crops, det = tmp_path / 'crops', tmp_path / 'det'
    det.mkdir()
    (det / 'test_missed.json').write_text('[]')
    cfg = be.classifier_config(str(REPO / be.METHOD_CONFIGS['mean_teacher']), str(crops), epochs=3,
                               epoch_length=7, test_crop_root=str(det), roc_dir=str(tmp_path / 'roc'),
                               labelled_ann=str(tmp_path / 'lab.json'),
                               unlabelled_ann=str(tmp_path / 'unl.json'))
    train_roots = _walk_roots(cfg.train_dataloader, [])
    assert len(train_roots) == 2 and set(train_roots) == {str(crops) + '/'}
    anns = [d['ann_file'] for d in cfg.train_dataloader['dataset']['datasets']]
    assert anns == [str(tmp_path / 'lab.json'), str(tmp_path / 'unl.json')]
    assert _walk_roots(cfg.val_dataloader, []) == [str(crops) + '/']
    assert cfg.test_dataloader['dataset']['data_root'] == str(det) + '/'
    ev = cfg.test_evaluator[0]
    assert ev['missed'] == str(det / 'test_missed.json') and ev['output_dir'] == str(tmp_path / 'roc')
    assert cfg.train_cfg['max_epochs'] == 3 and cfg.train_dataloader['sampler']['epoch_length'] == 7
    # no missed file (ground-truth crops of an old extraction): metric gets none rather than a bad path
    cfg = be.classifier_config(str(REPO / be.METHOD_CONFIGS['supervised_basic']), str(crops))
    assert cfg.test_evaluator[0]['missed'] is None
    assert cfg.train_cfg['max_epochs'] == 25  # base schedule kept
    # the dumped config loads back
    path = be.write_config(cfg, str(tmp_path / 'c' / 'sb.py'))
    from mmengine.config import Config
    assert Config.fromfile(path).train_dataloader['dataset']['data_root'] == str(crops) + '/'


def test_detector_config_paths_scale_and_schedule(tmp_path):
    cfg = be.detector_config(str(REPO / be.DETECTOR_CONFIG), str(tmp_path / 'root'),
                             str(tmp_path / 'ann'), max_iters=60, img_scale=192)
    assert cfg.train_dataloader['dataset']['ann_file'] == str(tmp_path / 'ann' / 'basic_train.json')
    assert cfg.test_dataloader['dataset']['ann_file'] == str(tmp_path / 'ann' / 'test.json')
    assert cfg.test_dataloader['dataset']['data_root'] == str(tmp_path / 'root') + '/'
    assert cfg.test_evaluator[0]['ann_file'] == str(tmp_path / 'ann' / 'test.json')
    assert cfg.val_evaluator[0]['ann_file'] == str(tmp_path / 'ann' / 'val.json')
    scales = [t['scale'] for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
              for t in cfg[k]['dataset']['pipeline'] if t['type'] == 'Resize']
    assert scales == [(192, 192)] * 3
    assert cfg.train_cfg['max_iters'] == 60 and cfg.train_cfg['val_interval'] == 60
    exp = [s for s in cfg.param_scheduler if s['type'] == 'ExponentialLR'][0]
    # overall decay of the base (x0.1 over the run) kept over the new length
    assert exp['end'] == 60 and exp['gamma']**60 == pytest.approx(0.1)
    assert cfg.default_hooks['checkpoint']['interval'] == 60
    with pytest.raises(ValueError, match='max_iters'):
        be.detector_config(str(REPO / be.DETECTOR_CONFIG), 'r', 'a', max_iters=0)


def test_prediction_boxes(tmp_path):
    preds = [dict(img_id=1, pred_instances=dict(
                 bboxes=torch.tensor([[0., 0, 10, 10], [5, 5, 20, 30], [3, 3, 3, 9]]),
                 scores=torch.tensor([0.3, 0.9, 0.95]), labels=torch.zeros(3))),
             dict(img_id=2, pred_instances=dict(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                                                labels=torch.zeros(0))),
             dict(img_id=3, pred_instances=dict(bboxes=np.array([[1., 2, 3, 4]]),
                                                scores=np.array([0.01]), labels=np.zeros(1)))]
    pkl = tmp_path / 'p.pkl'
    pkl.write_bytes(pickle.dumps(preds))
    top = be.PredictionBoxes(str(pkl), score_thr=0.05)
    # the degenerate (zero-width) 0.95 box is ignored; best remaining box first
    assert top(dict(id=1)) == [([5.0, 5.0, 20.0, 30.0], pytest.approx(0.9))]
    assert top(dict(id=2)) == [] and top(dict(id=3)) == []
    allb = be.PredictionBoxes(str(pkl), score_thr=0.0, keep='all')
    assert [s for _, s in allb(dict(id=1))] == [pytest.approx(0.9), pytest.approx(0.3)]
    assert len(allb(dict(id=3))) == 1
    with pytest.raises(KeyError, match='image id 9'):
        top(dict(id=9, file_name='x.png'))
    with pytest.raises(ValueError, match='keep'):
        be.PredictionBoxes(str(pkl), keep='best')


def test_targets_and_table():
    t = be.check_targets(dict(mean_teacher=0.90, supervised_all=0.915, supervised_basic=0.84))
    assert [x['met'] for x in t] == [True, True]
    assert t[0]['value'] == pytest.approx(-0.015) and t[1]['value'] == pytest.approx(0.06)
    t = be.check_targets(dict(mean_teacher=0.80, supervised_all=0.85, supervised_basic=0.78))
    assert [x['met'] for x in t] == [False, False]
    assert be.check_targets(dict(mean_teacher=0.8)) == []
    m = dict(auc=0.91234, auc_ci_low=0.88, auc_ci_high=0.94, sensitivity=0.75, sensitivity_ci_low=0.6,
             sensitivity_ci_high=0.85, specificity=0.9, accuracy=0.85, num_samples=375, num_missed=3)
    table = be.metrics_table(dict(mt=m))
    row = table.splitlines()[2]
    assert '0.912 [0.880, 0.940]' in row and '75.0 [60.0, 85.0]' in row
    assert '| 90.0 |' in row and row.endswith('| 375 | 3 |')


def test_write_report(tmp_path):
    for m, auc in (('mean_teacher', 0.9), ('supervised_basic', 0.8), ('supervised_all', 0.91)):
        for tag in ('gt', 'det'):
            out = tmp_path / 'cls' / m / f'test_{tag}'
            out.mkdir(parents=True)
            pre = 'teacher' if m == 'mean_teacher' else 'diag'
            (out / 'metrics.json').write_text(json.dumps({
                f'{pre}/auc': auc, f'{pre}/auc_ci_low': auc - .05, f'{pre}/auc_ci_high': auc + .03,
                f'{pre}/sensitivity': .7, f'{pre}/specificity': .8, f'{pre}/accuracy': .77,
                f'{pre}/num_samples': 10.0, f'{pre}/num_missed': 1.0}))
            (out / f'{pre}_roc.csv').write_text('threshold,fpr,tpr\ninf,0,0\n0.5,0.2,0.7\n0,1,1\n')
    (tmp_path / 'detector' / 'test').mkdir(parents=True)
    (tmp_path / 'detector' / 'test' / 'metrics.json').write_text(
        json.dumps({'coco/bbox_mAP': 0.4, 'iou/mean_iou': 0.6}))
    res = be.write_report(str(tmp_path), list(be.METHOD_CONFIGS), extra=dict(walls_s={'x': 3.0}))
    assert res['classification']['gt']['supervised_all']['auc'] == 0.91
    assert [t['met'] for t in res['targets']['det']] == [True, True]
    md = (tmp_path / 'results.md').read_text()
    assert 'coco/bbox_mAP | 0.4000' in md and 'NOT met' not in md and '| x | 3 |' in md
    for tag in ('gt', 'det'):
        assert Path(res['rocs'][tag]).read_bytes()[:4] == b'\x89PNG'
    assert json.loads((tmp_path / 'results.json').read_text())['detection']['iou/mean_iou'] == 0.6


def test_experiment_rejects_unknown_method(tmp_path):
    with pytest.raises(ValueError, match='unknown methods'):
        be.Experiment(str(tmp_path), str(tmp_path / 'w'), methods=['mean_teacher', 'svm'])


def test_driver_cli_bad_root(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / 'tools/analysis/busbra_experiment.py'),
                        str(tmp_path / 'missing')], capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0 and 'missing does not exist' in r.stderr


@pytest.mark.skipif(not BUSBRA.is_dir(), reason=f'BUS-BRA not found at {BUSBRA} (set MMBUS_BUSBRA)')
def test_busbra_split_protocol(tmp_path):
    """The issue's protocol on the real data: patient-grouped, stratified 12/65/3/20 split, seed 0."""
    subprocess.run([sys.executable, str(REPO / 'tools/dataset_converters/bus_to_coco.py'), str(BUSBRA),
                    '--format', 'busbra', '--out-dir', str(tmp_path), '--split', 'ratios', '--ratios',
                    'basic_train=0.12,extended_train=0.65,val=0.03,test=0.2', '--seed', '0',
                    '--no-progress'], check=True, cwd=REPO, capture_output=True, timeout=600)
    splits = {s: json.loads((tmp_path / 'annotations' / f'{s}.json').read_text())
              for s in ('basic_train', 'extended_train', 'val', 'test')}
    n = {s: len(c['images']) for s, c in splits.items()}
    assert sum(n.values()) == 1875
    assert n['test'] == pytest.approx(0.2 * 1875, abs=15)
    assert (n['basic_train'] + n['val']) == pytest.approx(0.15 * 1875, abs=15)
    patients = {s: {im['patient_id'] for im in c['images']} for s, c in splits.items()}
    names = list(patients)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not patients[a] & patients[b], (a, b)
    for s, c in splits.items():  # stratified: malignant share near 607/1875 everywhere
        mal = sum(im['pathology'] == 'malignant' for im in c['images']) / len(c['images'])
        assert mal == pytest.approx(607 / 1875, abs=0.05), s
    assert all(im.get('label_hidden') for im in splits['extended_train']['images'])


def test_short_schedule_ema_keeps_initial_weights_share_small():
    for iters in (60, 200, 500):
        e = be.short_schedule_ema(iters)
        r = e['rampup_iters']
        assert r == round(0.4 * iters)
        share = (1 - e['rampup_momentum'])**r * (1 - e['momentum'])**(iters - r)
        assert share < 0.03, (iters, share)
    assert be.short_schedule_ema(200) == dict(rampup_iters=80, rampup_momentum=0.03, momentum=0.01)
    with pytest.raises(ValueError):
        be.short_schedule_ema(0)


def test_ema_applied_to_mean_teacher_only(tmp_path):
    ema = dict(rampup_iters=12, momentum=0.02, rampup_momentum=0.06)
    mt = be.classifier_config(str(REPO / be.METHOD_CONFIGS['mean_teacher']), str(tmp_path), ema=ema)
    assert mt.model['rampup_iters'] == 12
    hook = [h for h in mt.custom_hooks if h['type'] == 'MeanTeacherHook'][0]
    assert (hook['momentum'], hook['rampup_momentum']) == (0.02, 0.06)
    assert be.total_iters(mt) == 25 * 20
    sb = be.classifier_config(str(REPO / be.METHOD_CONFIGS['supervised_basic']), str(tmp_path), ema=ema)
    assert 'rampup_iters' not in sb.model


def _tiny_coco(path):
    coco = dict(images=[dict(id=i, file_name=f'{i}.png', width=100, height=80) for i in (1, 2, 3)],
                annotations=[dict(id=i, image_id=i, category_id=1, bbox=[10 * i, 10, 20, 30],
                                  area=600, iscrowd=0) for i in (1, 2, 3)],
                categories=[dict(id=1, name='nodule')])
    path.write_text(json.dumps(coco))
    return coco


def test_shard_coco_partitions_images(tmp_path):
    coco = _tiny_coco(tmp_path / 'a.json')
    parts = be.shard_coco(str(tmp_path / 'a.json'), str(tmp_path / 's'), 2)
    loaded = [json.loads(Path(p).read_text()) for p in parts]
    assert [[im['id'] for im in c['images']] for c in loaded] == [[1, 3], [2]]
    assert [[a['image_id'] for a in c['annotations']] for c in loaded] == [[1, 3], [2]]
    assert loaded[0]['categories'] == coco['categories']


def test_evaluate_detections_offline(tmp_path):
    """Perfect boxes on images 1-2, a 50%-overlap box on image 3 (IoU 1/3 -> a miss at 0.5)."""
    _tiny_coco(tmp_path / 'a.json')

    def pred(i, box):
        return dict(img_id=i, ori_shape=(80, 100), pred_instances=dict(
            bboxes=torch.tensor([box], dtype=torch.float32), scores=torch.tensor([0.9]),
            labels=torch.tensor([0])))
    preds = [pred(1, [10, 10, 30, 40]), pred(2, [20, 10, 40, 40]), pred(3, [40, 10, 60, 40])]
    m = be.evaluate_detections(preds, str(tmp_path / 'a.json'))
    iou_key = [k for k in m if k.startswith('bus_box/') and 'iou' in k and 'mean' in k]
    assert iou_key, m
    assert m[iou_key[0]] == pytest.approx((1 + 1 + 1 / 3) / 3, abs=1e-3)
    assert 0.6 < m['coco/bbox_mAP_50'] < 0.7  # 2 of 3 nodules found at IoU 0.5


def test_method_config_sets_and_consistency_weight(tmp_path):
    """cpu_quick and paper config sets name different, existing configs; the paper mean teacher is the
    full-width 64 px network with 64 + 64 per batch; a w_max override reaches the mean teacher only."""
    from mmengine.config import Config
    for m in be.METHOD_CONFIGS:
        quick, paper = be.method_config(m, 'cpu_quick'), be.method_config(m, 'paper')
        assert quick == be.METHOD_CONFIGS[m] and paper != quick and paper.endswith(f'{m}_bus.py')
        assert (REPO / paper).is_file()
    paper = Config.fromfile(str(REPO / be.method_config('mean_teacher', 'paper')))
    assert paper.model['backbone']['widen_factor'] == 1.0 and paper.crop_size == 64
    assert (paper.train_dataloader['sampler']['num_labelled'],
            paper.train_dataloader['sampler']['num_unlabelled']) == (64, 64)
    with pytest.raises(ValueError, match='config set'):
        be.method_config('mean_teacher', 'gpu')
    with pytest.raises(ValueError, match='unknown method'):
        be.method_config('fixmatch')
    mt = be.classifier_config(str(REPO / be.method_config('mean_teacher')), str(tmp_path),
                              consistency_weight=10)
    assert mt.model['consistency_weight'] == 10.0
    sb = be.classifier_config(str(REPO / be.method_config('supervised_basic')), str(tmp_path),
                              consistency_weight=10)
    assert 'consistency_weight' not in sb.model


def test_experiment_tests_on_detector_crops_made_elsewhere(tmp_path):
    """--skip-detector still tests on WORK_DIR/crops_det when its test.json exists (crops made on
    another machine), and not otherwise."""
    exp = be.Experiment(str(tmp_path), str(tmp_path / 'w'), skip_detector=True, config_set='paper')
    assert not exp.has_det_crops
    assert exp.method_configs['supervised_all'].endswith('configs/mmbus/supervised_all_bus.py')
    (tmp_path / 'w' / 'crops_det').mkdir(parents=True)
    (tmp_path / 'w' / 'crops_det' / 'test.json').write_text('{}')
    assert exp.has_det_crops
    assert be.Experiment(str(tmp_path), str(tmp_path / 'x')).has_det_crops  # detector runs here
