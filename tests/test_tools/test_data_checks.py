"""What tools/train.py and tools/test.py check before they build a runner (mmbus.utils.data_checks): a
validation split without an image, a COCO metric reading another annotation file than its dataset, and the
misses of another split counted beside a split's crops are refused with one line naming the key and the file,
instead of failing at the first validation (after training) or mixing splits silently."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmbus.evaluation.calibration import save_calibration
from mmbus.utils.data_checks import check_data_files

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET = osp.join(REPO, 'configs', 'mmbus', 'faster_rcnn_vgg16_bus.py')
CLS = osp.join(REPO, 'configs', 'mmbus', 'supervised_basic_bus_cpu_quick.py')


def coco(path, n_images):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(dict(images=[dict(id=i, file_name=f'{i}.png', width=8, height=8) for i in range(n_images)],
                       annotations=[], categories=[dict(id=1, name='nodule')]), f)


def det_cfg(root, val_images=2, evaluator_file='val.json'):
    """The detector config pointed at ``root/annotations/*.json`` the way the README's own-data command does."""
    for split, n in (('basic_train', 3), ('val', val_images), ('test', 2), ('extended_train', 1)):
        coco(osp.join(root, 'annotations', f'{split}.json'), n)
    cfg = Config.fromfile(DET)
    ann = osp.join(root, 'annotations')
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': root,
                         'val_dataloader.dataset.data_root': root, 'test_dataloader.dataset.data_root': root,
                         'val_evaluator.0.ann_file': osp.join(ann, evaluator_file),
                         'test_evaluator.0.ann_file': osp.join(ann, 'test.json')})
    return cfg


def test_a_consistent_detector_config_passes(tmp_path):
    cfg = det_cfg(str(tmp_path))
    check_data_files(cfg)
    check_data_files(cfg, 'test')


def test_an_empty_validation_split_is_refused(tmp_path):
    cfg = det_cfg(str(tmp_path), val_images=0)
    val = osp.join(str(tmp_path), 'annotations/val.json')
    with pytest.raises(ValueError, match=rf'^val_dataloader\.dataset\.ann_file: annotation file {val} holds no '
                                         r'image: there is nothing to validate on'):
        check_data_files(cfg)


def test_an_empty_test_split_is_allowed(tmp_path):
    # a detector that missed every nodule leaves no crop to test: tools/test.py evaluates the misses alone
    cfg = det_cfg(str(tmp_path))
    coco(osp.join(str(tmp_path), 'annotations', 'test.json'), 0)
    check_data_files(cfg, 'test')


def test_a_coco_metric_reading_another_file_than_its_dataset_is_refused(tmp_path):
    cfg = det_cfg(str(tmp_path), evaluator_file='test.json')
    ann = osp.join(str(tmp_path), 'annotations')
    with pytest.raises(ValueError, match=rf'^val_evaluator\.0\.ann_file: {ann}/test\.json is not the file its '
                                         rf'dataset reads \(val_dataloader\.dataset\.ann_file: {tmp_path}/'
                                         rf'annotations/val\.json\); set both, e\.g\. --cfg-options '
                                         rf'val_evaluator\.0\.ann_file={tmp_path}/annotations/val\.json$'):
        check_data_files(cfg)
    # the shipped default evaluator file (another dataset's) beside a user's dataset: the README's old trap
    cfg = det_cfg(str(tmp_path))
    cfg.test_evaluator[0].ann_file = osp.join(ann, 'val.json')
    with pytest.raises(ValueError, match=r'^test_evaluator\.0\.ann_file: .*/val\.json is not the file its dataset'):
        check_data_files(cfg, 'test')
    check_data_files(cfg)  # the training checks do not read the test metrics


def test_a_missing_evaluator_file_is_named(tmp_path):
    cfg = det_cfg(str(tmp_path))
    cfg.val_evaluator[0].ann_file = str(tmp_path / 'nowhere.json')
    with pytest.raises(FileNotFoundError, match=rf'^val_evaluator\.0\.ann_file: annotation file {tmp_path}/'
                                                r'nowhere\.json does not exist$'):
        check_data_files(cfg)


def crops_cfg(root, split='val', missed='test'):
    for s in ('basic_train', 'val', 'test'):
        with open(osp.join(root, f'{s}.json'), 'w') as f:
            json.dump(dict(metainfo=dict(classes=['benign', 'malignant']),
                           data_list=[dict(img_path='a.png', gt_label=0)]), f)
        with open(osp.join(root, f'{s}_missed.json'), 'w') as f:
            json.dump([], f)
    cfg = Config.fromfile(CLS)
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': root, 'test_dataloader.dataset.ann_file': f'{split}.json',
                         'test_evaluator.0.missed': osp.join(root, f'{missed}_missed.json')})
    return cfg


def test_the_misses_of_another_split_are_refused(tmp_path):
    root = str(tmp_path)
    check_data_files(crops_cfg(root, 'test', 'test'), 'test')
    with pytest.raises(ValueError, match=rf'^test_evaluator\.0\.missed: {root}/test_missed\.json holds the misses '
                                         rf'of another split than the crops its dataset reads \(test_dataloader\.'
                                         rf'dataset\.ann_file: {root}/val\.json\); set --cfg-options '
                                         rf'test_evaluator\.0\.missed={root}/val_missed\.json '
                                         r'\(or test_evaluator\.0\.missed=None\)$'):
        check_data_files(crops_cfg(root, 'val', 'test'), 'test')
    cfg = crops_cfg(root, 'val', 'val')
    check_data_files(cfg, 'test')
    cfg.test_evaluator[0].missed = None
    check_data_files(cfg, 'test')
    # the test misses of another crop folder (the config's default when only data_root was pointed here)
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'test_missed.json').write_text('[]')
    cfg = crops_cfg(root, 'test', 'test')
    cfg.test_evaluator[0].missed = str(other / 'test_missed.json')
    with pytest.raises(ValueError, match=rf'^test_evaluator\.0\.missed: {other}/test_missed\.json holds the misses '
                                         rf'of another crop folder than the crops its dataset reads .*set '
                                         rf'--cfg-options test_evaluator\.0\.missed={root}/test_missed\.json'):
        check_data_files(cfg, 'test')
    cfg.test_evaluator[0].missed = str(tmp_path / 'gone' / 'test_missed.json')
    with pytest.raises(FileNotFoundError, match=r'^test_evaluator\.0\.missed: missed-detection file .*gone/'
                                                r'test_missed\.json does not exist$'):
        check_data_files(cfg, 'test')


def test_a_bad_calibration_file_is_named_before_the_runner(tmp_path):
    root = str(tmp_path)
    cfg = crops_cfg(root, 'test', 'test')
    cal = tmp_path / 'calibration.json'
    save_calibration(str(cal), 1.5, {'youden': 0.4}, n=20, malignant=8, source='val.pkl')
    cfg.test_evaluator[0].calibration = str(cal)
    check_data_files(cfg, 'test')
    fields = json.loads(cal.read_text())
    del fields['thresholds']
    cal.write_text(json.dumps(fields))
    with pytest.raises(ValueError, match=rf"^test_evaluator\.0\.calibration: {cal}: missing key 'thresholds'$"):
        check_data_files(cfg, 'test')
    cfg.test_evaluator[0].calibration = str(tmp_path / 'none.json')
    with pytest.raises(FileNotFoundError, match=r'^test_evaluator\.0\.calibration: calibration file .*none\.json '
                                                r'does not exist$'):
        check_data_files(cfg, 'test')


def _tool(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)


def test_the_tools_exit_with_the_line_before_building_a_runner(tmp_path):
    root = str(tmp_path / 'data')
    det_cfg(root)  # writes the annotation files
    ann = osp.join(root, 'annotations')
    opts = [f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'test_evaluator.0.ann_file={ann}/test.json']
    res = _tool('tools/train.py', DET, '--work-dir', tmp_path / 'work', '--cfg-options', *opts)
    # the base config's evaluator still reads the synthetic dataset's val.json (when it exists) or nothing
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith('error: val_evaluator.0.ann_file: ')
    assert not (tmp_path / 'work').exists() or not any(
        f.endswith('.pth') for _, _, fs in os.walk(tmp_path / 'work') for f in fs)
    ckpt = tmp_path / 'k.pth'
    ckpt.write_bytes(b'')
    res = _tool('tools/test.py', DET, ckpt, '--work-dir', tmp_path / 'work_t', '--cfg-options', *opts[2:3],
                f'test_evaluator.0.ann_file={ann}/val.json')
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1] == (
        f'error: test_evaluator.0.ann_file: {ann}/val.json is not the file its dataset reads '
        f'(test_dataloader.dataset.ann_file: {ann}/test.json); set both, e.g. --cfg-options '
        f'test_evaluator.0.ann_file={ann}/test.json')
