"""BUSDataset: loading the mmbus COCO format, image-level keys, normal images, bad input."""
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope

import mmbus.registry  # noqa: F401
from mmbus.datasets.bus_dataset import BUSDataset
from det_fixtures import make_bus_coco

META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'file_name',
             'pathology', 'patient_id', 'source', 'label_hidden')


@pytest.fixture(scope='module')
def bus_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('bus'))
    records = make_bus_coco(root, dict(basic_train=6, extended_train=2), normal_every=3,
                            hidden_split='extended_train')
    return root, records


def test_loads_boxes_and_keeps_image_level_keys(bus_root):
    init_default_scope('mmdet')
    root, records = bus_root
    ds = BUSDataset(data_root=root, ann_file='annotations/basic_train.json',
                    data_prefix=dict(img=''), test_mode=True, pipeline=[])
    assert len(ds) == 6  # test mode keeps the 2 normal images
    assert ds.metainfo['classes'] == ('nodule', )
    for info, (file_name, box, pathology) in zip(ds, records['basic_train']):
        assert info['file_name'] == file_name
        assert info['img_path'] == osp.join(root, file_name)
        assert info['pathology'] == pathology
        assert info['patient_id'].startswith('P') and info['source'] == 'hospital_test'
        assert info['label_hidden'] is False
        if box is None:
            assert info['instances'] == []
        else:
            x, y, w, h = box  # COCO xywh -> mmdet xyxy
            assert info['instances'][0]['bbox'] == [x, y, x + w, y + h]
            assert info['instances'][0]['bbox_label'] == 0
    hidden = BUSDataset(data_root=root, ann_file='annotations/extended_train.json',
                        data_prefix=dict(img=''), test_mode=True, pipeline=[])
    assert all(info['label_hidden'] for info in hidden)


def test_training_filters_normal_images_and_counts_them(bus_root):
    init_default_scope('mmdet')
    root, _ = bus_root
    ds = BUSDataset(data_root=root, ann_file='annotations/basic_train.json',
                    data_prefix=dict(img=''), filter_cfg=dict(filter_empty_gt=True),
                    pipeline=[])
    assert len(ds) == 4
    assert all(info['pathology'] != 'normal' for info in ds)
    assert ds.num_filtered_images == 2  # logged as '2 of 6 images left out of training'
    kept = BUSDataset(data_root=root, ann_file='annotations/basic_train.json',
                      data_prefix=dict(img=''), filter_cfg=dict(filter_empty_gt=False),
                      pipeline=[])
    assert len(kept) == 6


def test_pipeline_forwards_keys_to_the_data_sample(bus_root):
    init_default_scope('mmdet')
    root, records = bus_root
    ds = BUSDataset(
        data_root=root, ann_file='annotations/basic_train.json', data_prefix=dict(img=''),
        test_mode=True,
        pipeline=[dict(type='LoadImageFromFile', color_type='color'),
                  dict(type='Resize', scale=(48, 48), keep_ratio=True),
                  dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='PackDetInputs', meta_keys=META_KEYS)])
    out = ds[0]
    assert out['inputs'].shape[0] == 3  # grey PNG read as 3 channels
    sample = out['data_samples']
    assert sample.pathology == records['basic_train'][0][2]
    assert sample.file_name == records['basic_train'][0][0]
    assert sample.scale_factor == pytest.approx((0.5, 0.5))  # 96x80 -> 48x40, aspect kept
    x, y, w, h = records['basic_train'][0][1]
    # annotations loaded after Resize stay in original-image pixels (mmdet test convention)
    np.testing.assert_allclose(sample.gt_instances.bboxes.tensor.numpy()[0],
                               np.array([x, y, x + w, y + h]), atol=1e-4)


def write(tmp_path, coco):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(coco))
    return str(path)


def test_bad_input_messages_name_the_file(tmp_path):
    init_default_scope('mmdet')
    img = dict(id=1, file_name='a.png', width=10, height=10, pathology='benign')
    wrong_cat = write(tmp_path, dict(images=[img], annotations=[],
                                     categories=[dict(id=1, name='tumour')]))
    with pytest.raises(ValueError, match=r'bad\.json.*nodule'):
        BUSDataset(ann_file=wrong_cat, data_prefix=dict(img=''), pipeline=[])
    bad_path = write(tmp_path, dict(images=[dict(img, pathology='cancer')], annotations=[],
                                    categories=[dict(id=1, name='nodule')]))
    with pytest.raises(ValueError, match=r"bad\.json.*a\.png.*'cancer'"):
        BUSDataset(ann_file=bad_path, data_prefix=dict(img=''), pipeline=[])


def test_degenerate_boxes_are_reported(tmp_path):
    init_default_scope('mmdet')
    img = dict(id=1, file_name='a.png', width=10, height=10, pathology='benign')
    anns = [dict(id=5, image_id=1, category_id=1, bbox=[1, 1, 0, 3], area=0, iscrowd=0),
            dict(id=6, image_id=1, category_id=1, bbox=[1, 1, 4, 3], area=12, iscrowd=0)]
    path = write(tmp_path, dict(images=[img], annotations=anns,
                                categories=[dict(id=1, name='nodule')]))
    ds = BUSDataset(ann_file=path, data_prefix=dict(img=''), test_mode=True, pipeline=[])
    assert len(ds[0]['instances']) == 1
    assert ds.dropped_annotation_ids == [5]  # and logged as a warning
