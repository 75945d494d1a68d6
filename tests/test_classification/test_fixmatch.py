"""FixMatchClassifier and StrongViewAugment: pseudo-label mask, gradients (student only, non-zero), the
loss with no confident sample, orientation-preserving strong views; and the mean teacher's unsupervised
gradient (a consistency term that is identically zero would make semi-supervised results supervised ones)."""
import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import mmbus.registry  # noqa: F401
from mmbus.models.fixmatch_classifier import pseudo_labels
from mmbus.models.strong_view_augment import StrongViewAugment

REPO = __file__.rsplit("/tests/", 1)[0]


def tiny(type_='FixMatchClassifier', **kw):
    torch.manual_seed(0)
    cfg = dict(type=type_, backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16),
               head=dict(type='LinearClsHead', num_classes=2, in_channels=8))
    cfg.update(kw)
    return MODELS.build(cfg)


def batch(labels, size=16):
    torch.manual_seed(1)
    return torch.randn(len(labels), 1, size, size), [DataSample().set_gt_label(y) for y in labels]


def test_pseudo_label_mask_by_hand():
    probs = torch.tensor([[0.97, 0.03], [0.40, 0.60], [0.05, 0.95], [0.5, 0.5]])
    labels, mask = pseudo_labels(probs, 0.95)
    assert labels.tolist()[:3] == [0, 1, 1]
    assert mask.tolist() == [True, False, True, False]  # 0.95 itself passes
    assert pseudo_labels(probs, 0.0)[1].all()


def test_unsupervised_gradient_reaches_the_student_only():
    model = tiny(threshold=0.0)  # every pseudo-label kept
    x, ds = batch([-1] * 6)      # unlabelled only: any gradient is the unsupervised term's
    losses = model.loss(x, ds)
    assert losses['sup_loss_cls'].item() == 0 and losses['unsup_mask_ratio'].item() == 1.0
    assert losses['unsup_loss_fixmatch'].item() > 0
    losses['unsup_loss_fixmatch'].backward()
    grads = [p.grad.abs().sum().item() for p in model.student.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0
    assert all(p.grad is None for p in model.teacher.parameters())


def test_no_confident_sample_gives_a_graph_connected_zero():
    model = tiny(threshold=1.0)  # a softmax of two finite logits never reaches 1
    x, ds = batch([0, 1, -1, -1])
    losses = model.loss(x, ds)
    assert losses['unsup_mask_ratio'].item() == 0 and losses['unsup_loss_fixmatch'].item() == 0
    assert losses['unsup_loss_fixmatch'].requires_grad
    (losses['sup_loss_cls'] + losses['unsup_loss_fixmatch']).backward()
    assert all(p.grad is not None for p in model.student.parameters() if p.requires_grad)


def test_teacher_pseudo_labels_and_prediction():
    model = tiny(threshold=0.0, pseudo_label_from='teacher')
    x, ds = batch([0, -1, -1])
    assert model.loss(x, ds)['unsup_loss_fixmatch'].item() > 0
    model.eval()
    out = model.predict(x, [DataSample() for _ in range(3)])
    with torch.no_grad():
        ref = torch.softmax(model.teacher(x, mode='tensor'), 1)  # predictions come from the EMA teacher
    assert torch.allclose(torch.stack([o.pred_score for o in out]), ref)
    with pytest.raises(ValueError, match='threshold'):
        tiny(threshold=1.5)
    with pytest.raises(ValueError, match='pseudo_label_from'):
        tiny(pseudo_label_from='oracle')


def test_mean_teacher_consistency_has_a_gradient():
    model = tiny('SemiClassifier', consistency_weight=1.0, rampup_iters=0)
    model.train()
    x, ds = batch([-1] * 6)
    losses = model.loss(x, ds)
    assert losses['unsup_loss_consistency'].item() > 0
    losses['unsup_loss_consistency'].backward()
    assert sum(p.grad.abs().sum().item() for p in model.student.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in model.teacher.parameters())


def test_strong_views_keep_orientation_and_cut_out():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, :16] = 1.0  # bright top half, dark bottom half
    aug = StrongViewAugment(noise_std=0.0, brightness=0.0, contrast=0.0, translate=0, zoom=0.0, speckle=0.0,
                            blur=0.0, cutout=0.25, cutout_prob=1.0, flip_prob=0.5)
    out = aug(x)
    # never flipped vertically: the top stays brighter than the bottom for every sample
    assert (out[:, :, :8].mean(dim=(1, 2, 3)) > out[:, :, 24:].mean(dim=(1, 2, 3))).all()
    # one 8 x 8 square per sample set to the image mean (0.5)
    assert ((out == 0.5).sum(dim=(1, 2, 3)) == 64).all()
    blur = StrongViewAugment(noise_std=0.0, brightness=0.0, contrast=0.0, translate=0, zoom=0.0, speckle=0.0,
                             blur=2.0, blur_prob=1.0, cutout=0.0, flip_prob=0.0)
    edge = blur(x)[:, :, 14:18].mean()  # the step is smoothed: values between 0 and 1 near it
    assert 0.2 < edge.item() < 0.8 and blur(x).shape == x.shape
    speckled = StrongViewAugment(noise_std=0.0, brightness=0.0, contrast=0.0, translate=0, zoom=0.0,
                                 speckle=0.3, blur=0.0, cutout=0.0, flip_prob=0.0)(x)
    # multiplicative about the mean: deviations scale with the distance from it, the mean is kept
    assert abs(speckled.mean().item() - 0.5) < 0.02 and speckled.std().item() > x.std().item() * 1.0
    with pytest.raises(ValueError, match='cutout'):
        StrongViewAugment(cutout=1.0)


def test_student_pseudo_labels_need_teacher_buffers_from_the_student():
    """FixMatch proper never runs the teacher in training: with buffer_policy='skip' its batch-norm statistics
    would stay at their initial values and it would predict a constant (validation AUC 0.5)."""
    from mmbus.engine.hooks.mean_teacher_hook import MeanTeacherHook
    model = tiny()
    assert not model.teacher_updates_buffers
    assert tiny(pseudo_label_from='teacher').teacher_updates_buffers
    with pytest.raises(ValueError, match='FixMatchClassifier never runs the teacher'):
        MeanTeacherHook(buffer_policy='skip').prepare(model)
    hook = MeanTeacherHook(buffer_policy='average', momentum=0.5)
    hook.prepare(model)
    x, samples = batch([0, 1, -1, -1])
    model.train()
    model.loss(x, samples)  # student batch-norm statistics move; the teacher's do not
    s_mean = model.student.backbone.state_dict()
    t_mean = model.teacher.backbone.state_dict()
    key = next(k for k in s_mean if k.endswith('running_mean'))
    assert not torch.equal(s_mean[key], t_mean[key]) and not t_mean[key].any()
    hook.update(0.5)
    # averaged halfway towards the student's statistics
    assert torch.allclose(model.teacher.backbone.state_dict()[key], 0.5 * s_mean[key])


def test_shipped_fixmatch_configs_average_the_teacher_buffers():
    from mmengine.config import Config
    for name in ('fixmatch_bus', 'fixmatch_bus_cpu_quick'):
        cfg = Config.fromfile(f'{REPO}/configs/mmbus/{name}.py')
        hook = next(h for h in cfg.custom_hooks if h['type'] == 'MeanTeacherHook')
        assert hook['buffer_policy'] == 'average', name
        assert cfg.model.pseudo_label_from == 'student'
