"""Deriving run configs from shipped configs with dotted keys."""
import pytest
from mmengine.config import Config

from mmbus.study.configs import derive_config, has_key, shipped_config
from mmbus.study.spec import find_values, grid_id, grid_points, metric_index, rebase_overrides


def test_shipped_config_per_schedule():
    assert shipped_config('mean_teacher_bus', 'cpu-quick').endswith('configs/mmbus/mean_teacher_bus_cpu_quick.py')
    assert shipped_config('mean_teacher_bus', 'toy').endswith('mean_teacher_bus_cpu_quick.py')
    assert shipped_config('mean_teacher_bus', 'paper').endswith('configs/mmbus/mean_teacher_bus.py')
    with pytest.raises(ValueError, match="unknown schedule 'fast'"):
        shipped_config('mean_teacher_bus', 'fast')
    with pytest.raises(FileNotFoundError, match='no_such_bus_cpu_quick.py'):
        shipped_config('no_such_bus', 'cpu-quick')


def test_derive_config_dotted_keys_lists_and_misspellings(tmp_path):
    src = shipped_config('mean_teacher_bus', 'cpu-quick')
    out = tmp_path / 'mt.py'
    cfg = derive_config(src, {'train_cfg.max_epochs': 3, 'custom_hooks.0.momentum': 0.05,
                              'model.view_augment.brightness': 0.4}, str(out))
    again = Config.fromfile(str(out))  # the dumped file is the config that runs
    for c in (cfg, again):
        assert c.train_cfg.max_epochs == 3
        assert c.custom_hooks[0].type == 'MeanTeacherHook' and c.custom_hooks[0].momentum == 0.05
        assert c.custom_hooks[0].rampup_momentum == 0.03  # untouched neighbours stay
        assert c.model.view_augment.brightness == 0.4
    with pytest.raises(KeyError, match="'trian_cfg' is not in"):
        derive_config(src, {'trian_cfg.max_epochs': 3})
    with pytest.raises(KeyError, match="'custom_hooks.7' is not in"):
        derive_config(src, {'custom_hooks.7.momentum': 0.1})


def test_rebase_overrides_move_data_and_annotations():
    cfg = Config.fromfile(shipped_config('faster_rcnn_vgg16_bus', 'cpu-quick'))
    ov = rebase_overrides(cfg, '/new/images', '/work/ann')
    assert ov['train_dataloader.dataset.data_root'] == '/new/images/'
    assert ov['train_dataloader.dataset.ann_file'] == '/work/ann/annotations/basic_train.json'
    assert ov['val_evaluator.0.ann_file'] == '/work/ann/annotations/val.json'
    ov = rebase_overrides(cfg, '/new/images')  # annotations beside the images
    assert ov['val_evaluator.0.ann_file'] == '/new/images/annotations/val.json'
    assert 'train_dataloader.dataset.ann_file' not in ov  # relative to data_root already
    crops = Config.fromfile(shipped_config('supervised_all_bus', 'cpu-quick'))
    ov = rebase_overrides(crops, '/c')
    assert ov['train_dataloader.dataset.datasets.1.data_root'] == '/c/'
    assert ov['test_evaluator.0.missed'] == '/c/test_missed.json'
    assert metric_index(crops, 'test_evaluator', 'BinaryDiagnosticMetric') == [0]
    assert set(find_values(crops, lambda k, v: k == 'ann_file', ['train_dataloader']).values()) == {
        'basic_train.json', 'extended_train.json'}


def test_has_key_and_grid():
    cfg = Config.fromfile(shipped_config('supervised_basic_bus', 'cpu-quick'))
    assert has_key(cfg, 'train_cfg.max_epochs') and not has_key(cfg, 'model.rampup_iters')
    assert has_key(cfg, 'test_evaluator.0.missed') and not has_key(cfg, 'test_evaluator.3')
    pts = grid_points(dict(seed=[0, 1], labelled_share=[0.05, 0.3]))
    assert pts == [dict(seed=0, labelled_share=0.05), dict(seed=0, labelled_share=0.3),
                   dict(seed=1, labelled_share=0.05), dict(seed=1, labelled_share=0.3)]
    assert grid_points({}) == [{}]
    assert grid_id(pts[1]) == 'seed0_share0.30'
    assert grid_id({'model.consistency_weight': 10}) == 'consistency_weight10'
