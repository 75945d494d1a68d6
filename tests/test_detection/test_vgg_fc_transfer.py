"""ImageNet VGG16 -> Faster R-CNN VGG16 initialisation (conv layers and fc6/fc7), tested on
checkpoints written by the test (no download): mmpretrain and torchvision key layouts."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmbus.registry  # noqa: F401
from mmbus.models.vgg_fc_transfer import vgg_layer_tensors
from mmdet.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# A small box head keeps the fake fc6 tiny: 512 ch x 2 x 2 RoI = 2048 -> 64 -> 64.
ROI, FC = 2, 64


def fake_classifier(prefix=''):
    g = torch.Generator().manual_seed(1)
    return {
        f'{prefix}classifier.0.weight': torch.randn(FC, 512 * ROI * ROI, generator=g),
        f'{prefix}classifier.0.bias': torch.randn(FC, generator=g),
        f'{prefix}classifier.3.weight': torch.randn(FC, FC, generator=g),
        f'{prefix}classifier.3.bias': torch.randn(FC, generator=g),
        f'{prefix}classifier.6.weight': torch.randn(10, FC, generator=g),
        f'{prefix}classifier.6.bias': torch.randn(10, generator=g),
    }


def mmpretrain_checkpoint(path):
    from mmpretrain.models.backbones import VGG
    torch.manual_seed(2)
    vgg = VGG(depth=16)  # features.{0,1,3,4,6,7,8,10,...}.conv.*
    vgg.init_weights()
    sd = {f'backbone.{k}': v for k, v in vgg.state_dict().items()}
    sd.update(fake_classifier('backbone.'))
    torch.save(dict(meta=dict(), state_dict=sd), path)
    return sd


def torchvision_checkpoint(path, batch_norm=False):
    from torchvision.models.vgg import cfgs, make_layers
    torch.manual_seed(3)
    features = make_layers(cfgs['D'], batch_norm=batch_norm)
    for m in features.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
    sd = {f'features.{k}': v for k, v in features.state_dict().items()}
    sd.update(fake_classifier())
    torch.save(sd, path)  # torchvision checkpoints are bare state dicts
    return sd


def build_detector(ckpt, norm=False, fc=FC):
    init_default_scope('mmdet')
    path = osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus.py')
    cfg = Config.fromfile(path)
    # the one-line --cfg-options the config documents for a local ImageNet file, applied as tools/train.py does
    line = next(ln for ln in open(path) if ln.startswith('#   --cfg-options'))
    opts = dict(kv.split('=', 1) for kv in line.split('--cfg-options', 1)[1].split())
    cfg.merge_from_dict({k: v.replace('VGG.pth', str(ckpt)) for k, v in opts.items()})
    assert cfg.model.roi_head.bbox_head.init_cfg[-1].type == 'VGGImageNetInit'
    model_cfg = cfg.model
    model_cfg.roi_head.bbox_head.fc_out_channels = fc
    model_cfg.roi_head.bbox_head.roi_feat_size = ROI
    model_cfg.roi_head.bbox_roi_extractor.roi_layer.output_size = ROI
    if norm:
        model_cfg.backbone.norm_cfg = dict(type='BN')
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def test_mmpretrain_layout_conv_and_fc67_transferred(tmp_path):
    torch.set_num_threads(1)
    sd = mmpretrain_checkpoint(tmp_path / 'vgg16_mmpretrain.pth')
    model = build_detector(tmp_path / 'vgg16_mmpretrain.pth')
    msd = model.state_dict()
    conv_keys = [k for k in sd if k.startswith('backbone.features') and k.endswith('.weight')]
    assert len(conv_keys) == 13
    for k in conv_keys + [k.replace('weight', 'bias') for k in conv_keys]:
        assert torch.equal(msd[k], sd[k]), k
    fcs = model.roi_head.bbox_head.shared_fcs
    assert torch.equal(fcs[0].weight, sd['backbone.classifier.0.weight'])  # fc6
    assert torch.equal(fcs[0].bias, sd['backbone.classifier.0.bias'])
    assert torch.equal(fcs[1].weight, sd['backbone.classifier.3.weight'])  # fc7
    assert torch.equal(fcs[1].bias, sd['backbone.classifier.3.bias'])
    # the new layers keep mmdet's initialisation (std 0.01 / 0.001 normal, zero bias)
    assert model.roi_head.bbox_head.fc_cls.weight.std() < 0.05
    assert torch.all(model.roi_head.bbox_head.fc_reg.bias == 0)


def test_torchvision_layout_conv_and_fc67_transferred(tmp_path):
    torch.set_num_threads(1)
    sd = torchvision_checkpoint(tmp_path / 'vgg16.pth')
    model = build_detector(tmp_path / 'vgg16.pth')
    tv_convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    mm_convs = [0, 1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16]
    for t, m in zip(tv_convs, mm_convs):
        conv = model.backbone.features[m].conv
        assert torch.equal(conv.weight, sd[f'features.{t}.weight'])
        assert torch.equal(conv.bias, sd[f'features.{t}.bias'])
    fcs = model.roi_head.bbox_head.shared_fcs
    assert torch.equal(fcs[0].weight, sd['classifier.0.weight'])
    assert torch.equal(fcs[1].weight, sd['classifier.3.weight'])


def test_torchvision_bn_statistics_transferred(tmp_path):
    torch.set_num_threads(1)
    sd = torchvision_checkpoint(tmp_path / 'vgg16_bn.pth', batch_norm=True)
    _, convs, _ = vgg_layer_tensors(sd)
    assert len(convs) == 13 and all('bn' in c for c in convs)
    model = build_detector(tmp_path / 'vgg16_bn.pth', norm=True)
    bn = model.backbone.features[0].bn  # torchvision features.1 is conv 0's BN
    assert torch.equal(bn.running_mean, sd['features.1.running_mean'])
    assert torch.equal(bn.weight, sd['features.1.weight'])


def test_shape_mismatch_names_both_shapes(tmp_path):
    mmpretrain_checkpoint(tmp_path / 'v.pth')
    with pytest.raises(ValueError, match=r'fc6 weight.*\(64, 2048\).*\(32, 2048\)'):
        build_detector(tmp_path / 'v.pth', fc=32)


def test_checkpoint_without_vgg_layers_is_rejected(tmp_path):
    torch.save({'foo.weight': torch.zeros(1)}, tmp_path / 'x.pth')
    with pytest.raises(ValueError, match='no VGG feature layers'):
        build_detector(tmp_path / 'x.pth')
