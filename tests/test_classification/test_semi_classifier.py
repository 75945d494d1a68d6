"""MTConvNet, BatchViewAugment and SemiClassifier behaviour."""
import math

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import mmbus.registry  # noqa: F401
from mmbus.models.mt_convnet import MTConvNet
from mmbus.models.semi_classifier import SemiClassifier
from mmbus.models.view_augment import BatchViewAugment


def tiny_semi(**kw):
    torch.manual_seed(0)
    cfg = dict(
        type='SemiClassifier',
        backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=8),
        rampup_iters=10)
    cfg.update(kw)
    return MODELS.build(cfg)


def batch(labels, size=16):
    torch.manual_seed(1)
    x = torch.randn(len(labels), 1, size, size)
    return x, [DataSample().set_gt_label(y) for y in labels]


# ---------------------------------------------------------------- backbone
def test_mt_convnet_layout_and_width():
    net = MTConvNet(in_channels=1, widen_factor=0.25)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32] * 3 + [64] * 3 + \
        [128] * 3 + [64, 32]
    assert [c.kernel_size[0] for c in convs] == [3] * 9 + [1, 1]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 3
    drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 3 and all(d.p == 0.5 for d in drops)
    lrelu = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(lrelu) == 11 and lrelu[0].negative_slope == 0.1
    out = net(torch.zeros(2, 1, 32, 32))
    assert isinstance(out, tuple) and out[0].shape == (2, 32)
    full = MTConvNet(widen_factor=1.0)
    assert full.out_channels == 128
    # 1/4 width: ~16x fewer conv weights
    n_full = sum(c.weight.numel() for c in full.modules()
                 if isinstance(c, torch.nn.Conv2d))
    n_quarter = sum(c.weight.numel() for c in convs)
    assert 14 < n_full / n_quarter < 17


def test_mt_convnet_gaussian_init_and_weight_norm():
    torch.manual_seed(0)
    net = MTConvNet(in_channels=3, widen_factor=0.5, init_std=0.05)
    net.init_weights()
    w = net.features[3].weight  # second conv (64x64x3x3 = 36864 weights)
    assert abs(w.std().item() - 0.05) < 0.002
    assert abs(w.mean().item()) < 0.002
    wn = MTConvNet(in_channels=1, widen_factor=1 / 16, weight_norm=True)
    assert any('parametrizations' in n for n, _ in wn.named_parameters())
    assert wn(torch.zeros(1, 1, 16, 16))[0].shape == (1, 8)
    with pytest.raises(ValueError):
        MTConvNet(widen_factor=0)


# ----------------------------------------------------------- augmentation
def test_view_augment_only_horizontal_flip_and_independent_views():
    aug = BatchViewAugment(flip_prob=1.0, brightness=0.0, noise_std=0.0)
    x = torch.arange(16.).view(1, 1, 4, 4)
    assert torch.equal(aug(x), x.flip(-1))  # horizontal, never vertical
    aug = BatchViewAugment(flip_prob=0.5, brightness=0.2, noise_std=0.15)
    x = torch.zeros(256, 1, 8, 8)
    a, b = aug(x), aug(x)
    assert not torch.equal(a, b)
    noise = a - a.mean(dim=(1, 2, 3), keepdim=True)
    assert abs(noise.std().item() - 0.15) < 0.01
    offsets = a.mean(dim=(1, 2, 3))
    assert offsets.abs().max() <= 0.2 + 0.05
    # BATCH_AUGMENTS form keeps the labels
    score = torch.eye(2)[[0, 1]]
    out, s = aug(torch.zeros(2, 1, 4, 4), score)
    assert torch.equal(s, score) and s.dtype == torch.float32
    with pytest.raises(ValueError):
        BatchViewAugment(noise_std=-1)


# ----------------------------------------------------------------- model
def test_gradients_reach_the_student_only():
    model = tiny_semi()
    model.train()
    x, ds = batch([0, 1, -1, -1, 1, -1])
    losses = model.loss(x, ds)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    grads = [p.grad for p in model.student.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_consistency_is_nonzero_and_moves_the_student():
    """Guard against a consistency term that compares the teacher with
    itself (zero gradient): here only the consistency term is optimised."""
    model = tiny_semi(rampup_iters=0, consistency_weight=1.0)
    model.train()
    # make teacher differ from student so their predictions disagree
    with torch.no_grad():
        for p in model.teacher.head.parameters():
            p.add_(torch.randn_like(p))
    x, ds = batch([-1] * 8)
    losses = model.loss(x, ds)
    assert losses['sup_loss_cls'].item() == 0.0  # no labelled sample
    cons = losses['unsup_loss_consistency']
    assert cons.item() > 0
    cons.backward()
    g = [p.grad for p in model.student.parameters()]
    assert sum(t.abs().sum() for t in g if t is not None) > 0
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                          lr=0.1)
    opt.step()
    after = model.student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_consistency_mse_and_kl_values():
    model = tiny_semi(view_augment=None, rampup_iters=0,
                      consistency_weight=1.0)
    model.eval()  # deterministic: no dropout, BN running stats
    model.teacher_train_mode = False
    x, ds = batch([-1, -1])
    with torch.no_grad():
        p_s = torch.softmax(model.student(x, mode='tensor'), 1)
        p_t = torch.softmax(model.teacher(x, mode='tensor') + 0, 1)
    # identical nets and views -> zero consistency
    assert model.loss(x, ds)['unsup_loss_consistency'].item() == \
        pytest.approx(0, abs=1e-10)
    with torch.no_grad():
        model.teacher.head.fc.bias.add_(torch.tensor([1.0, -1.0]))
        p_t = torch.softmax(model.teacher(x, mode='tensor'), 1)
    expected = ((p_s - p_t)**2).mean(1).mean()
    got = model.loss(x, ds)['unsup_loss_consistency']
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    model.consistency = 'kl'
    expected_kl = (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    assert model.loss(x, ds)['unsup_loss_consistency'].item() == \
        pytest.approx(expected_kl.item(), rel=1e-4)


def test_batch_without_unlabelled_is_ddp_safe():
    model = tiny_semi(consistency_on='unlabelled')
    model.train()
    x, ds = batch([0, 1, 0, 1])
    losses = model.loss(x, ds)
    assert losses['unsup_loss_consistency'].item() == 0.0
    # the zero term still belongs to the graph
    assert losses['unsup_loss_consistency'].requires_grad
    assert losses['sup_num_labelled'].item() == 4
    assert all(('loss' in k) == k.endswith(('_cls', '_consistency'))
               for k in losses)
    assert all(k.startswith(('sup_', 'unsup_')) for k in losses)


def test_consistency_on_all_uses_labelled_too():
    model = tiny_semi(consistency_on='all', rampup_iters=0)
    model.train()
    with torch.no_grad():
        for p in model.teacher.head.parameters():
            p.add_(1.0)
    x, ds = batch([0, 1, 0, 1])
    assert model.loss(x, ds)['unsup_loss_consistency'].item() > 0


def test_sigmoid_rampup():
    model = tiny_semi(consistency_weight=100.0, rampup_iters=1000)
    assert model.consistency_weight_at(0) == pytest.approx(100 * math.exp(-5))
    assert model.consistency_weight_at(500) == \
        pytest.approx(100 * math.exp(-5 * 0.25))
    assert model.consistency_weight_at(1000) == 100.0
    assert model.consistency_weight_at(5000) == 100.0
    model.set_iter(500)
    x, ds = batch([0, -1])
    assert model.loss(x, ds)['unsup_weight'].item() == \
        pytest.approx(100 * math.exp(-1.25), rel=1e-6)


def test_predict_teacher_default_and_student_scores():
    model = tiny_semi(predict_student_too=True)
    model.eval()
    with torch.no_grad():
        model.teacher.head.fc.bias.copy_(torch.tensor([5.0, -5.0]))
    x, ds = batch([0, 1])
    out = model.predict(x, ds)
    t = torch.softmax(model.teacher(x, mode='tensor'), 1)
    s = torch.softmax(model.student(x, mode='tensor'), 1)
    assert torch.allclose(out[0].pred_score, t[0])
    assert torch.allclose(out[0].student_pred_score, s[0])
    x, ds = batch([0, 1])
    out = model.predict(x, ds, mode='student')
    assert torch.allclose(out[1].pred_score, s[1])
    assert torch.allclose(out[1].teacher_pred_score, t[1])
    assert torch.allclose(model(x, mode='tensor'),
                          model.teacher(x, mode='tensor'))


def test_plain_classifier_checkpoint_initialises_both():
    sup = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=8)))
    with torch.no_grad():
        for p in sup.parameters():
            p.fill_(0.123)
    model = tiny_semi()
    model.load_state_dict(sup.state_dict(), strict=True)
    for net in (model.student, model.teacher):
        for k, v in sup.state_dict().items():
            assert torch.equal(net.state_dict()[k], v), k
    # and its own format still loads
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    other = tiny_semi()
    other.load_state_dict(sd)
    assert torch.equal(other.teacher.head.fc.weight, sd['teacher.head.fc.weight'])


def test_bad_arguments():
    with pytest.raises(ValueError, match='consistency'):
        tiny_semi(consistency='l1')
    with pytest.raises(ValueError, match='predict_with'):
        tiny_semi(predict_with='both')
    model = tiny_semi()
    with pytest.raises(ValueError, match='data sample'):
        model.loss(torch.zeros(2, 1, 16, 16), None)
    assert isinstance(model, SemiClassifier)


@pytest.mark.parametrize('on,expected', [('unlabelled', 3), ('all', 5)])
def test_teacher_runs_only_on_consistency_samples(on, expected):
    model = tiny_semi(consistency_on=on)
    model.train()
    seen = []
    model.teacher.backbone.register_forward_hook(
        lambda mod, inp, out: seen.append(inp[0].shape[0]))
    x, ds = batch([0, 1, -1, -1, -1])
    model.loss(x, ds)
    assert seen == [expected]


def test_load_from_supervised_checkpoint_file(tmp_path):
    """``load_from`` path: mmengine's load_checkpoint on a plain
    ImageClassifier checkpoint fills student and teacher."""
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
    sup = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=8)))
    with torch.no_grad():
        sup.head.fc.weight.fill_(0.5)
    save_checkpoint({'state_dict': sup.state_dict()}, str(tmp_path / 's.pth'))
    model = tiny_semi()
    load_checkpoint(model, str(tmp_path / 's.pth'), strict=True)
    assert torch.all(model.student.head.fc.weight == 0.5)
    assert torch.all(model.teacher.head.fc.weight == 0.5)


def test_view_augment_translation_shifts_whole_pixels():
    aug = BatchViewAugment(flip_prob=0, brightness=0, noise_std=0,
                           translate=2)
    x = torch.arange(64.).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    y = aug(x)
    seen = set()
    for img in y:
        # find the shift: the interior is the original image moved by (dy, dx)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = x[0, 0, max(0, -dy):8 - max(0, dy),
                        max(0, -dx):8 - max(0, dx)]
                got = img[0, max(0, dy):8 - max(0, -dy),
                          max(0, dx):8 - max(0, -dx)]
                if torch.equal(ref, got):
                    seen.add((dy, dx))
    assert len(seen) > 3 and all(abs(a) <= 2 and abs(b) <= 2
                                 for a, b in seen)


def test_view_augment_stretch_scales_each_axis_within_bounds():
    # a centred 16 x 8 (h x w) bright box in a 64 x 64 image; each view
    # stretches x and y independently by a factor in [0.8, 1.2]
    torch.manual_seed(0)
    aug = BatchViewAugment(flip_prob=0, brightness=0, noise_std=0,
                           scale=0.2)
    x = torch.zeros(64, 1, 64, 64)
    x[:, :, 24:40, 28:36] = 1.0
    y = aug(x)
    heights = (y[:, 0, :, 32] > 0.5).sum(1).float()  # centre column
    widths = (y[:, 0, 32, :] > 0.5).sum(1).float()   # centre row
    # bounds: 16 * [0.8, 1.2] and 8 * [0.8, 1.2], +-1 px of rasterisation
    assert heights.min() >= 12 and heights.max() <= 20
    assert widths.min() >= 5 and widths.max() <= 11
    # both axes really vary, independently of each other
    assert heights.std() > 0.5 and widths.std() > 0.3
    ratio = heights / widths
    assert ratio.max() - ratio.min() > 0.4
    # scale=0 keeps the image exactly (no resampling blur)
    same = BatchViewAugment(flip_prob=0, brightness=0, noise_std=0)
    assert torch.equal(same(x), x)
    with pytest.raises(ValueError, match='scale'):
        BatchViewAugment(scale=1.0)
    with pytest.raises(ValueError, match='scale'):
        BatchViewAugment(scale=-0.1)


def test_view_augment_zoom_scales_both_axes_together():
    torch.manual_seed(0)
    aug = BatchViewAugment(flip_prob=0, brightness=0, noise_std=0, zoom=0.25)
    x = torch.zeros(64, 1, 64, 64)
    x[:, :, 16:48, 24:40] = 1.0  # 32 tall x 16 wide
    y = aug(x)
    heights = (y[:, 0, :, 32] > 0.5).sum(1).float()
    widths = (y[:, 0, 32, :] > 0.5).sum(1).float()
    # sizes vary within 32 * [0.75, 1.25] (+-1 px) ...
    assert heights.min() >= 23 and heights.max() <= 41 and heights.std() > 2
    # ... but the aspect ratio stays 2 (+- rasterisation), unlike the stretch
    assert ((heights / widths) - 2).abs().max() < 0.25
    with pytest.raises(ValueError, match='zoom'):
        BatchViewAugment(zoom=1.5)
