"""Every detector config builds its model with mmdet MODELS and says what the paper says."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmbus.registry  # noqa: F401
from mmdet.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_*.py')))
STRIDE_8 = {'faster_rcnn_vgg16_bus_cpu_quick.py'}


def test_all_detector_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    assert {'faster_rcnn_vgg16_bus.py', 'faster_rcnn_vgg16_bus_cpu_quick.py',
            'faster_rcnn_vgg16_busbra.py'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_a_two_class_vgg16_faster_rcnn(path):
    torch.set_num_threads(1)
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert 'mmbus.registry' in cfg.custom_imports['imports']
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)  # weights are not initialised: nothing is downloaded
    assert type(model).__name__ == 'FasterRCNN'
    assert type(model.backbone).__name__ == 'VGG'
    assert model.roi_head.bbox_head.num_classes == 1
    # single level: conv5_3 before pool5 at stride 16; the synthetic images' CPU-quick config: conv4_3 before
    # pool4 at stride 8. The anchors and the RoI extractor follow the backbone's stride.
    stride = 8 if osp.basename(path) in STRIDE_8 else 16
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 64, 96))
    assert len(feats) == 1 and feats[0].shape == (1, 512, 64 // stride, 96 // stride)
    gen = model.rpn_head.prior_generator
    assert gen.strides == [(stride, stride)] and gen.num_base_priors == [9]
    assert list(model.roi_head.bbox_roi_extractor.featmap_strides) == [stride]
    assert cfg.model.data_preprocessor.pad_size_divisor == stride
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert any(h['type'] == 'TwoPhaseFineTuneHook' for h in cfg.custom_hooks)
    evaluators = {e['type'] for e in cfg.test_evaluator}
    assert evaluators == {'CocoMetric', 'BoxIoUMetric'}
    for pipeline in (cfg.train_pipeline, cfg.test_pipeline):
        for t in pipeline:
            if t['type'] == 'Resize':
                assert t['keep_ratio']
            if t['type'] == 'RandomFlip':
                assert t['direction'] == 'horizontal'


def test_paper_config_values():
    cfg = Config.fromfile(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus.py'))
    m = cfg.model
    assert m.backbone.type == 'mmpretrain.VGG' and m.backbone.depth == 16
    assert m.backbone.out_indices == (4, ) and m.backbone.with_last_pool is False
    assert m.rpn_head.anchor_generator.scales == [8, 16, 32]
    assert m.rpn_head.anchor_generator.ratios == [0.5, 1.0, 2.0]
    assert m.roi_head.bbox_roi_extractor.roi_layer == dict(type='RoIAlign', output_size=7,
                                                           sampling_ratio=0)
    assert m.roi_head.bbox_head.fc_out_channels == 4096
    assert m.train_cfg.rcnn.sampler.num == 128
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum) == ('SGD', 0.001, 0.9)
    (sched, ) = cfg.param_scheduler
    assert sched.type == 'ExponentialLR'
    assert sched.gamma**70000 == pytest.approx(0.1)
    assert cfg.train_cfg.max_iters == 70000
    (hook, ) = cfg.custom_hooks
    assert hook.freeze_iters == 5000
    # ImageNet init of the convs and of fc6/fc7 from one checkpoint
    assert m.backbone.init_cfg.type == 'VGGImageNetInit'
    assert m.roi_head.bbox_head.init_cfg[-1].part == 'fc67'
    assert m.backbone.init_cfg.checkpoint.endswith('vgg16_batch256_imagenet_20210208-db26f1a5.pth')


def test_quick_and_busbra_variants():
    quick = Config.fromfile(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py'))
    assert quick.model.backbone.norm_cfg.type == 'BN'
    assert 'init_cfg' not in quick.model.backbone or quick.model.backbone.init_cfg is None
    assert quick.model.roi_head.bbox_head.fc_out_channels == 512
    # conv4_3 at stride 8 for the 256 px synthetic images; BUS-BRA keeps conv5_3 at stride 16
    assert quick.model.backbone.out_indices == (3, ) and quick.model.rpn_head.anchor_generator.strides == [8]
    assert quick.model.roi_head.bbox_roi_extractor.featmap_strides == [8]
    assert quick.model.train_cfg.rcnn.sampler.num == 64
    assert quick.train_dataloader.dataset.data_root == 'data/bus_synthetic/hospital_a/'
    assert quick.train_dataloader.dataset.ann_file == 'annotations/basic_train.json'
    assert quick.val_dataloader.dataset.ann_file == 'annotations/val.json'
    bra = Config.fromfile(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_busbra.py'))
    assert bra.test_dataloader.dataset.data_root == bra.data_root
    assert bra.test_evaluator[0].ann_file == bra.data_root + 'annotations/test.json'
    bra_quick = Config.fromfile(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_busbra_cpu_quick.py'))
    m = bra_quick.model
    assert m.backbone.out_indices == (4, ) and m.backbone.num_stages == 5
    assert m.rpn_head.anchor_generator.strides == [16] and m.roi_head.bbox_roi_extractor.featmap_strides == [16]
    assert m.roi_head.bbox_head.fc_out_channels == 1024 and m.data_preprocessor.pad_size_divisor == 16


ALL_DETECTOR_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs/mmbus/*faster_rcnn_vgg16_*.py')))


@pytest.mark.parametrize('path', ALL_DETECTOR_CONFIGS, ids=osp.basename)
def test_detector_mixed_precision_is_float16(path):
    """A detector's RoIAlign and NMS are mmcv's kernels, and autocast hands them the backbone's dtype (mmdet casts
    the RoIs to the features' type): mmcv 2.1.0's CUDA kernels dispatch on float32 / float64 / float16 only, so a
    bf16 detector fails at its first RoI step on a GPU. Mixed precision in a detector config is float16."""
    ow = Config.fromfile(path).optim_wrapper
    if ow.get('type') == 'AutoAmpOptimWrapper':
        assert ow.get('dtype') == 'float16'  # its own default is bfloat16, right for the recognisers only
    elif ow.get('type') == 'AmpOptimWrapper':
        assert ow.get('dtype') in (None, 'float16')  # mmengine's default: float16


def test_mmcv_roi_align_refuses_bfloat16():
    """The premise above on this machine's kernels: mmcv's RoIAlign has no bfloat16 path (if a later mmcv gains
    one, this fails and the float16 rule can be revisited)."""
    from mmcv.ops import RoIAlign
    feats = torch.rand(1, 4, 8, 8)
    rois = torch.tensor([[0., 1., 1., 6., 6.]])
    layer = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2)
    assert layer(feats, rois).shape == (1, 4, 2, 2)
    with pytest.raises(RuntimeError):
        layer(feats.bfloat16(), rois.bfloat16())
