"""BUSCropDataset, LetterboxResize and LabelledUnlabelledSampler."""
import json

import numpy as np
import pytest
from mmengine.dataset import ConcatDataset

import mmbus.registry  # noqa: F401
from mmbus.datasets.crop_dataset import BUSCropDataset
from mmbus.datasets.semi_sampler import LabelledUnlabelledSampler
from mmbus.datasets import semi_sampler as semi_sampler_mod
from mmbus.datasets.transforms import LetterboxResize

from mmbus.datasets.synthetic_crops import make_crop_set


@pytest.fixture(scope='module')
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp('crops')
    make_crop_set(str(root), dict(basic_train=10, extended_train=25, val=6),
                  seed=0)
    return root


def test_crop_dataset_labels_and_hidden_labels(crops):
    basic = BUSCropDataset(ann_file='basic_train.json', data_root=str(crops))
    ext = BUSCropDataset(ann_file='extended_train.json', data_root=str(crops))
    revealed = BUSCropDataset(ann_file='extended_train.json',
                              data_root=str(crops), use_hidden_labels=True)
    assert basic.metainfo['classes'] == ('benign', 'malignant')
    assert len(basic) == 10 and all(basic.is_labelled())
    assert len(ext) == 25 and not any(ext.is_labelled())
    raw = json.load(open(crops / 'extended_train.json'))['data_list']
    assert [revealed.get_data_info(i)['gt_label'] for i in range(25)] == \
        [d['true_label'] for d in raw]
    assert BUSCropDataset(ann_file='extended_train.json',
                          data_root=str(crops),
                          drop_unlabelled=True).__len__() == 0
    info = basic.get_data_info(0)
    assert info['img_path'].startswith(str(crops))
    assert info['bbox'] and info['patient_id']


def test_crop_dataset_pipeline_letterbox(crops):
    ds = BUSCropDataset(
        ann_file='val.json', data_root=str(crops),
        pipeline=[dict(type='LoadImageFromFile', color_type='grayscale'),
                  dict(type='LetterboxResize', size=32),
                  dict(type='PackInputs')])
    item = ds[0]
    assert item['inputs'].shape == (1, 32, 32)
    assert item['data_samples'].gt_label.item() in (0, 1)


def test_letterbox_keeps_aspect_and_centres():
    img = np.full((20, 40), 200, np.uint8)  # 40 px wide, 20 px tall
    out = LetterboxResize(size=32)(dict(img=img))
    assert out['img'].shape == (32, 32)
    assert out['scale_factor'] == pytest.approx(0.8)
    assert out['pad_offset'] == (0, 8)
    rows = np.where(out['img'].max(axis=1) > 0)[0]
    assert (rows.min(), rows.max()) == (8, 23)  # 16 px tall band, centred
    tall = LetterboxResize(size=32)(dict(img=np.ones((40, 20, 3), np.uint8)))
    assert tall['img'].shape == (32, 32, 3) and tall['pad_offset'] == (8, 0)


@pytest.mark.parametrize('content,match', [
    ('not json', 'not valid JSON'),
    ('{"data_list": [{"img_path": "a.png"}]}', 'gt_label'),
    ('{"data_list": [{"img_path": "a.png", "gt_label": 3}]}', 'got 3'),
    ('{"metainfo": {"classes": ["a", "b"]}, "data_list": []}', 'classes'),
    ('[1, 2]', 'data_list'),
])
def test_crop_dataset_bad_input(tmp_path, content, match):
    (tmp_path / 'bad.json').write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        BUSCropDataset(ann_file='bad.json', data_root=str(tmp_path))
    assert 'bad.json' in str(e.value)


def test_crop_dataset_hidden_without_true_label(tmp_path):
    (tmp_path / 'x.json').write_text(
        '{"data_list": [{"img_path": "a.png", "gt_label": -1}]}')
    with pytest.raises(ValueError, match='true_label'):
        BUSCropDataset(ann_file='x.json', data_root=str(tmp_path),
                       use_hidden_labels=True)
    with pytest.raises(FileNotFoundError, match='missing.json'):
        BUSCropDataset(ann_file='missing.json', data_root=str(tmp_path))


class FakeDataset:
    """10 labelled (0..9, both classes), 25 unlabelled (10..34)."""

    def __init__(self, n_lab=10, n_unl=25, classes=(0, 1)):
        self.labels = [classes[i % len(classes)] for i in range(n_lab)] + \
            [-1] * n_unl

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, i):
        return dict(gt_label=self.labels[i])


def batches(sampler):
    idx = list(sampler)
    b = sampler.batch_size
    assert len(idx) == len(sampler) and len(idx) % b == 0
    return [idx[i:i + b] for i in range(0, len(idx), b)]


def test_sampler_batch_composition_and_epoch_length():
    ds = FakeDataset()
    s = LabelledUnlabelledSampler(ds, num_labelled=4, num_unlabelled=6,
                                  seed=0)
    # epoch by the labelled set: ceil(10 / 4) = 3 batches
    assert s.num_batches == 3 and len(s) == 30
    for b in batches(s):
        assert all(i < 10 for i in b[:4])
        assert all(i >= 10 for i in b[4:])
    # labelled stream: one full permutation before any repeat
    lab = [i for b in batches(s) for i in b[:4]]
    assert sorted(lab[:10]) == list(range(10))
    s2 = LabelledUnlabelledSampler(ds, 4, 6, epoch_length='unlabelled',
                                   seed=0)
    assert s2.num_batches == 5  # ceil(25 / 6)
    unl = [i for b in batches(s2) for i in b[4:]]
    assert sorted(unl[:25]) == list(range(10, 35))
    assert LabelledUnlabelledSampler(ds, 4, 6, epoch_length=7).num_batches \
        == 7


def test_sampler_seeded_and_set_epoch():
    ds = FakeDataset()
    a = list(LabelledUnlabelledSampler(ds, 4, 6, seed=3))
    b = list(LabelledUnlabelledSampler(ds, 4, 6, seed=3))
    assert a == b
    s = LabelledUnlabelledSampler(ds, 4, 6, seed=3)
    s.set_epoch(1)
    assert list(s) != a
    s.set_epoch(0)
    assert list(s) == a
    plain = list(LabelledUnlabelledSampler(ds, 4, 0, seed=1, shuffle=False))
    assert plain == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_sampler_distributed_shards_are_disjoint(monkeypatch):
    ds = FakeDataset(n_lab=16, n_unl=40)
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(semi_sampler_mod, 'get_dist_info',
                            lambda r=rank: (r, 2))
        s = LabelledUnlabelledSampler(ds, num_labelled=4, num_unlabelled=4,
                                      seed=5)
        assert s.num_batches == 2  # ceil(16 / (4 * 2))
        per_rank.append(batches(s))
    lab = [set(i for b in r for i in b[:4]) for r in per_rank]
    unl = [set(i for b in r for i in b[4:]) for r in per_rank]
    assert lab[0].isdisjoint(lab[1]) and len(lab[0] | lab[1]) == 16
    assert unl[0].isdisjoint(unl[1])


def test_sampler_on_concat_dataset_and_errors(crops):
    basic = BUSCropDataset(ann_file='basic_train.json', data_root=str(crops))
    ext = BUSCropDataset(ann_file='extended_train.json', data_root=str(crops))
    s = LabelledUnlabelledSampler(ConcatDataset([basic, ext]), 3, 5, seed=0)
    for b in batches(s):
        assert all(i < 10 for i in b[:3]) and all(i >= 10 for i in b[3:])
    with pytest.raises(ValueError, match='no unlabelled'):
        LabelledUnlabelledSampler(basic, 3, 5)
    with pytest.raises(ValueError, match='no labelled'):
        LabelledUnlabelledSampler(ext, 3, 5)
    with pytest.raises(ValueError, match='epoch_length'):
        LabelledUnlabelledSampler(FakeDataset(), 3, 5, epoch_length='x')
