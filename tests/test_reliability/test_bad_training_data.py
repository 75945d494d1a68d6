"""Impossible training data is refused with a message before the first iteration: a labelled set
of one class, fewer labelled samples than one batch takes, a batch size that is not num_labelled +
num_unlabelled, a validation set of one class."""
import json
import os
import shutil

import pytest
from mmengine.runner import Runner
from rel_tiny import mt_cfg

from mmbus.datasets.semi_sampler import LabelledUnlabelledSampler


class Labels:
    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, i):
        return dict(gt_label=self.labels[i])


def test_sampler_refuses_one_class():
    s = LabelledUnlabelledSampler(Labels([1] * 6 + [-1] * 8), 2, 2, seed=0)
    with pytest.raises(ValueError, match='all 6 labelled samples have gt_label 1'):
        iter(s)  # before the first batch (building it alone must not fail: tools/test.py builds it too)
    LabelledUnlabelledSampler(Labels([1] * 6 + [-1] * 8), 2, 2, seed=0, min_classes=1).check()


def test_sampler_refuses_fewer_samples_than_a_batch_takes():
    ds = Labels([0, 1, 0] + [-1] * 40)
    with pytest.raises(ValueError, match='3 labelled samples but every batch takes num_labelled=4'):
        LabelledUnlabelledSampler(ds, 4, 4, seed=0).check()
    with pytest.raises(ValueError, match='2 unlabelled samples'):
        list(LabelledUnlabelledSampler(Labels([0, 1] * 4 + [-1] * 2), 4, 4, seed=0))
    s = LabelledUnlabelledSampler(ds, 4, 4, seed=0, allow_repeats=True)  # on purpose (few-label demos)
    assert len(list(s)) == len(s)


@pytest.fixture
def crops_copy(crop_root, tmp_path):
    root = tmp_path / 'crops'
    shutil.copytree(crop_root, root)
    return root


def _relabel(root, split, label):
    path = root / f'{split}.json'
    raw = json.loads(path.read_text())
    for d in raw['data_list']:
        d['gt_label'] = label
    path.write_text(json.dumps(raw))


def _train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_one_class_labelled_set_is_refused_before_training(crops_copy, tmp_path):
    _relabel(crops_copy, 'basic_train', 0)
    cfg = mt_cfg(str(crops_copy), str(tmp_path / 'w'), 1, workers=0)
    with pytest.raises(ValueError, match=r'basic_train.json.*gt_label 0'):
        _train(cfg)
    assert not any(f.endswith('.pth') for f in os.listdir(tmp_path / 'w'))


def test_one_class_validation_set_is_refused(crops_copy, tmp_path):
    _relabel(crops_copy, 'val', 1)
    cfg = mt_cfg(str(crops_copy), str(tmp_path / 'w'), 1, workers=0)
    with pytest.raises(ValueError, match=r"validation set BUSCropDataset\(.*val.json\).*'malignant'"):
        _train(cfg)


def test_batch_size_mismatch_is_refused(crop_root, tmp_path):
    cfg = mt_cfg(crop_root, str(tmp_path / 'w'), 1, workers=0)
    cfg['train_dataloader']['batch_size'] = 4  # sampler composes 4 + 4
    with pytest.raises(ValueError, match=r'batch_size=4 but LabelledUnlabelledSampler composes batches of '
                                         r'num_labelled \+ num_unlabelled = 4 \+ 4 = 8'):
        _train(cfg)
    assert not any(f.endswith('.pth') for f in os.listdir(tmp_path / 'w'))


def test_semi_classifier_needs_two_classes():
    from mmpretrain.registry import MODELS
    with pytest.raises(ValueError, match='num_classes=1'):
        MODELS.build(dict(type='SemiClassifier', backbone=dict(type='MTConvNet', in_channels=1,
                                                               widen_factor=1 / 16),
                          head=dict(type='LinearClsHead', num_classes=1, in_channels=8)))
