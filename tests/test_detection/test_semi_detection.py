"""Semi-supervised detection (SoftTeacher over the VGG16 Faster R-CNN): the finite labelled/unlabelled
sampler, the configs, the unlabelled branch's isolation from the extended-train boxes, the teacher's
gradients, the zero loss of unconfident unlabelled images, loading the supervised detector, and a short
tools/train.py + tools/test.py run on a tiny fixture."""
import copy
import math
import os
import os.path as osp
import subprocess

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

import mmbus.registry  # noqa: F401
import mmbus.datasets.semi_sampler as semi_sampler_mod
from mmbus.datasets.semi_det_dataset import semi_det_datasets
from mmbus.datasets.semi_det_sampler import LabelledUnlabelledDetSampler
from mmbus.apis.export import export_teacher_detector
from det_fixtures import PYTHON, REPO, make_bus_coco, tiny_detector_cfg

QUICK = osp.join(REPO, 'configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus_cpu_quick.py')
# each SoftTeacher config and the supervised detector it is built around
CONFIGS = {osp.join(REPO, 'configs/mmbus', f'soft_teacher_faster_rcnn_vgg16_{name}.py'):
           osp.join(REPO, 'configs/mmbus', f'faster_rcnn_vgg16_{det}.py')
           for name, det in (('bus', 'bus'), ('bus_cpu_quick', 'bus_cpu_quick'), ('busbra', 'busbra'),
                             ('busbra_gpu', 'busbra_gpu'))}
# basic_train: 4 images, one normal (left out of training) -> 3 labelled; extended_train: 6 with 2 normal.
SPLITS = dict(basic_train=4, extended_train=6, val=2, test=2)
SCALE = (96, 96)


# ------------------------------------------------------------------------------------------------ helpers
class _Concat:
    """What the sampler reads of mmengine's ConcatDataset: ``datasets`` and ``len``."""

    def __init__(self, *sizes):
        self.datasets = [list(range(n)) for n in sizes]

    def __len__(self):
        return sum(len(d) for d in self.datasets)


def _batches(sampler):
    idx = list(sampler)
    k = sampler.batch_size
    assert len(idx) % k == 0
    return [idx[i:i + k] for i in range(0, len(idx), k)]


def _rescale(node, scale):
    """Set ``scale`` of every Resize / RandomResize inside a (nested) pipeline config."""
    if isinstance(node, dict):
        if node.get('type') in ('Resize', 'RandomResize'):
            node['scale'] = scale
        for v in node.values():
            _rescale(v, scale)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _rescale(v, scale)


def _find(node, type_):
    """Every transform config of type ``type_`` inside a (nested) pipeline config."""
    if isinstance(node, dict):
        return ([node] if node.get('type') == type_ else []) + [t for v in node.values() for t in _find(v, type_)]
    if isinstance(node, (list, tuple)):
        return [t for v in node for t in _find(v, type_)]
    return []


def tiny_semi_cfg(root, work_dir, max_epochs=1, load_from=None):
    """The cpu-quick SoftTeacher config around the tiny detector of det_fixtures, on the fixture."""
    cfg = Config.fromfile(QUICK)
    tiny = tiny_detector_cfg(root, work_dir)
    cfg.model.detector = tiny.model
    cfg.model.data_preprocessor.data_preprocessor = tiny.model.data_preprocessor
    cfg.model.semi_train_cfg.jitter_times = 2
    root = root.rstrip('/') + '/'
    cfg.train_dataloader.dataset.labelled.data_root = root  # the unlabelled split follows it
    cfg.train_dataloader.dataset.img_scale = SCALE
    for key in ('val', 'test'):
        cfg[f'{key}_dataloader'].dataset.data_root = root
        for ev in cfg[f'{key}_evaluator']:
            if ev['type'] == 'CocoMetric':
                ev['ann_file'] = root + f'annotations/{key}.json'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _rescale(cfg[key], SCALE)
    cfg.work_dir = work_dir
    cfg.load_from = load_from
    cfg.train_cfg.max_epochs = max_epochs
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor.window_size = 1
    return cfg


def save_supervised_detector(cfg, path):
    """A plain FasterRCNN checkpoint of the config's detector, as the supervised training writes it."""
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    torch.manual_seed(1)
    detector = MODELS.build(cfg.model.detector)
    detector.init_weights()
    state = detector.state_dict()
    torch.save(dict(meta=dict(), state_dict=state), path)
    return state


@pytest.fixture(scope='module')
def fixture_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('bus_semi'))
    records = make_bus_coco(root, SPLITS, normal_every=3, hidden_split='extended_train')
    return root, records


@pytest.fixture(scope='module')
def semi_setup(fixture_root, tmp_path_factory):
    """(cfg, train ConcatDataset, a 2 labelled + 2 unlabelled batch) of the tiny SoftTeacher."""
    from mmdet.registry import DATASETS
    torch.set_num_threads(1)
    init_default_scope('mmdet')
    root, _ = fixture_root
    cfg = tiny_semi_cfg(root, str(tmp_path_factory.mktemp('work')))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    n_lab = len(dataset.datasets[0])
    torch.manual_seed(0)
    batch = pseudo_collate([dataset[i] for i in (0, 1, n_lab, n_lab + 1)])
    return cfg, dataset, batch


def build_model(cfg, **semi_train_cfg):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.semi_train_cfg.update(semi_train_cfg)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    return model


def unsup_losses(model, batch):
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    return losses, {k: v for k, v in losses.items() if k.startswith('unsup_') and 'loss' in k}


def total(losses):
    return sum(sum(v) if isinstance(v, (list, tuple)) else v for v in losses.values())


# ------------------------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize('nl,nu,n_lab,n_unl', [(1, 4, 5, 7), (2, 2, 7, 3), (2, 3, 4, 20)])
def test_sampler_batches_hold_fixed_labelled_and_unlabelled_images(nl, nu, n_lab, n_unl):
    sampler = LabelledUnlabelledDetSampler(_Concat(n_lab, n_unl), num_labelled=nl, num_unlabelled=nu, seed=3)
    batches = _batches(sampler)
    assert len(batches) == math.ceil(n_lab / nl)  # the epoch ends: one pass over the labelled set
    assert len(sampler) == len(batches) * (nl + nu) and sampler.batch_size == nl + nu
    for b in batches:
        assert all(i < n_lab for i in b[:nl])
        assert all(n_lab <= i < n_lab + n_unl for i in b[nl:])
    assert {i for b in batches for i in b[:nl]} == set(range(n_lab))  # every labelled image, once a pass


def test_sampler_is_deterministic_per_seed_and_epoch():
    def draw(seed, epoch):
        s = LabelledUnlabelledDetSampler(_Concat(12, 30), num_labelled=2, num_unlabelled=3, seed=seed)
        s.set_epoch(epoch)
        return list(s)
    assert draw(0, 0) == draw(0, 0)
    assert draw(0, 1) == draw(0, 1)
    assert draw(0, 0) != draw(0, 1)
    assert draw(0, 0) != draw(1, 0)


def test_sampler_rank_shards_are_disjoint(monkeypatch):
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(semi_sampler_mod, 'get_dist_info', lambda r=rank: (r, 2))
        s = LabelledUnlabelledDetSampler(_Concat(8, 20), num_labelled=2, num_unlabelled=3, seed=5)
        s.set_epoch(2)
        shards.append(_batches(s))
    assert len(shards[0]) == len(shards[1]) == 2  # 8 labelled / (2 per batch x 2 ranks)
    lab = [{i for b in sh for i in b[:2]} for sh in shards]
    unl = [{i for b in sh for i in b[2:]} for sh in shards]
    assert not lab[0] & lab[1] and lab[0] | lab[1] == set(range(8))
    assert not unl[0] & unl[1]  # 12 of the 20 unlabelled images: one cycle, no overlap


def test_sampler_refuses_impossible_data_clearly():
    with pytest.raises(ValueError, match=r'labelled \(first\) dataset.*has no image'):
        LabelledUnlabelledDetSampler(_Concat(0, 5), seed=0)
    with pytest.raises(ValueError, match=r'unlabelled \(second\) dataset.*has no image'):
        LabelledUnlabelledDetSampler(_Concat(5, 0), seed=0)
    with pytest.raises(ValueError, match='ConcatDataset of two datasets'):
        LabelledUnlabelledDetSampler(_Concat(5, 5, 5), seed=0)
    with pytest.raises(ValueError, match='ConcatDataset of two datasets'):
        LabelledUnlabelledDetSampler(list(range(5)), seed=0)
    with pytest.raises(ValueError, match='unlabelled dataset .* has 2 images .*allow_repeats'):
        LabelledUnlabelledDetSampler(_Concat(5, 2), num_labelled=1, num_unlabelled=4, seed=0)
    s = LabelledUnlabelledDetSampler(_Concat(5, 2), num_labelled=1, num_unlabelled=4, seed=0, allow_repeats=True)
    assert all(5 <= i < 7 for b in _batches(s) for i in b[1:])


# ------------------------------------------------------------------------------------------------ configs
def _train_datasets(cfg):
    """The [labelled, unlabelled] dataset configs LabelledUnlabelledDetDataset builds from ``cfg``."""
    ds = dict(cfg.train_dataloader.dataset)
    assert ds.pop('type') == 'LabelledUnlabelledDetDataset'
    return semi_det_datasets(**ds)


@pytest.mark.parametrize('path', CONFIGS)
def test_configs(path):
    cfg = Config.fromfile(path)
    m = cfg.model
    assert m.type == 'GatedSoftTeacher' and m.detector.type == 'FasterRCNN'
    assert m.semi_test_cfg.predict_on == 'teacher' and m.semi_train_cfg.freeze_teacher
    assert m.data_preprocessor.type == 'MultiBranchDataPreprocessor'
    loader = cfg.train_dataloader
    s = loader.sampler
    assert s.type == 'LabelledUnlabelledDetSampler' and loader.batch_sampler is None
    assert loader.batch_size == s.num_labelled + s.num_unlabelled
    labelled, unlabelled = _train_datasets(cfg)
    assert labelled['ann_file'].endswith('basic_train.json')
    assert unlabelled['ann_file'].endswith('extended_train.json') and not unlabelled['filter_cfg']['filter_empty_gt']
    assert labelled['data_root'] == unlabelled['data_root'] == cfg.val_dataloader.dataset.data_root
    assert [t['type'] for t in unlabelled['pipeline']][1] == 'LoadEmptyAnnotations'
    rotations = _find(unlabelled['pipeline'], 'Rotate')
    assert rotations and all(t['max_mag'] <= 10 for t in rotations)  # a few degrees at most
    text = cfg.pretty_text
    assert 'vertical' not in text and 'ShearX' not in text and 'Solarize' not in text
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.val_cfg.type == 'ValLoop'
    assert [h.type for h in cfg.custom_hooks][0] == 'mmdet.MeanTeacherHook'
    assert [e.type for e in cfg.val_evaluator] == ['CocoMetric', 'BoxIoUMetric']
    assert cfg.val_evaluator[0].ann_file == cfg.val_dataloader.dataset.data_root + 'annotations/val.json'
    assert cfg.default_hooks.checkpoint.by_epoch and cfg.load_from.endswith('.pth')


@pytest.mark.parametrize('path,detector', CONFIGS.items())
def test_configs_train_their_detector_on_its_own_pipeline(path, detector):
    """The student's labelled branch sees exactly the supervised detector's training data; both unlabelled
    views are sized to the detector's input."""
    cfg, det = Config.fromfile(path), Config.fromfile(detector)
    semi_det, sup_det = cfg.model.detector.to_dict(), det.model.to_dict()
    for m in (semi_det, sup_det):  # weights come from load_from (the supervised detector), no ImageNet init
        m['backbone'].pop('init_cfg', None), m['roi_head']['bbox_head'].pop('init_cfg', None)
    assert semi_det == sup_det
    labelled, unlabelled = _train_datasets(cfg)
    det_ds = det.train_dataloader.dataset.to_dict()
    det_pipe = det_ds.pop('pipeline')
    assert {k: v for k, v in labelled.items() if k != 'pipeline'} == det_ds
    assert labelled['pipeline'][:-1] == det_pipe[:-1]
    assert labelled['pipeline'][-1] == dict(type='MultiBranch', branch_field=list(cfg.branch_field),
                                            sup=det_pipe[-1])
    assert unlabelled['pipeline'][0] == det_pipe[0]
    views = unlabelled['pipeline'][-1]
    assert [views[b][0]['type'] for b in ('unsup_teacher', 'unsup_student')] == ['Resize', 'RandomResize']
    assert views['unsup_teacher'][0]['scale'] == views['unsup_student'][0]['scale'] == tuple(det.img_scale)


def test_semi_det_datasets_assembly_and_bad_input():
    pack = dict(type='PackDetInputs')
    load = dict(type='LoadImageFromFile')
    labelled = dict(type='BUSDataset', data_root='r/', ann_file='a/basic.json', filter_cfg=dict(filter_empty_gt=True),
                    pipeline=[load, dict(type='LoadAnnotations'), dict(type='Resize', scale=(9, 9)), pack])
    views = dict(unsup_teacher=[dict(type='Resize', keep_ratio=True), pack],
                 unsup_student=[dict(type='RandomResize', ratio_range=(0.5, 2.0)), dict(type='Resize', scale=(5, 5)),
                                pack])
    lab, unl = semi_det_datasets(labelled, dict(ann_file='a/ext.json', filter_cfg=dict(filter_empty_gt=False)),
                                 views, img_scale=[7, 8])
    branches = ['sup', 'unsup_teacher', 'unsup_student']
    assert lab == dict(labelled, pipeline=labelled['pipeline'][:-1] + [
        dict(type='MultiBranch', branch_field=branches, sup=pack)])
    assert unl['data_root'] == 'r/' and unl['ann_file'] == 'a/ext.json' and unl['filter_cfg'] == dict(
        filter_empty_gt=False)
    assert unl['pipeline'] == [load, dict(type='LoadEmptyAnnotations'), dict(
        type='MultiBranch', branch_field=branches,
        unsup_teacher=[dict(type='Resize', keep_ratio=True, scale=(7, 8)), pack],
        # a resize with its own scale keeps it
        unsup_student=[dict(type='RandomResize', ratio_range=(0.5, 2.0), scale=(7, 8)),
                       dict(type='Resize', scale=(5, 5)), pack])]
    assert labelled['pipeline'][-1] is pack and 'scale' not in views['unsup_teacher'][0]  # inputs left as they were
    # a labelled subset (indices) stays with the labelled images
    lab, unl = semi_det_datasets(dict(labelled, indices=[0, 2]), dict(ann_file='a/ext.json'), views, (7, 8))
    assert lab['indices'] == [0, 2] and 'indices' not in unl
    with pytest.raises(ValueError, match="end with PackDetInputs; it ends with 'Resize'"):
        semi_det_datasets(dict(labelled, pipeline=labelled['pipeline'][:-1]), {}, views, (7, 8))
    with pytest.raises(ValueError, match=r"views \['unsup_teachr'\] must be branches"):
        semi_det_datasets(labelled, {}, dict(unsup_teachr=views['unsup_teacher']), (7, 8))
    with pytest.raises(ValueError, match='has no scale and no img_scale was given'):
        semi_det_datasets(labelled, {}, views)


# ------------------------------------------------------------------------------------------------ data
def test_unlabelled_branch_never_sees_extended_train_boxes(fixture_root, semi_setup):
    _, records = fixture_root
    cfg, dataset, _ = semi_setup
    labelled, unlabelled = dataset.datasets
    assert len(labelled) == 3  # the normal basic-train image is left out (filter_empty_gt)
    # every extended-train image, boxed or not: membership does not depend on the hidden boxes
    assert len(unlabelled) == SPLITS['extended_train']
    boxed = [i for i in range(len(unlabelled)) if unlabelled.get_data_info(i)['instances']]
    assert len(boxed) == sum(r[1] is not None for r in records['extended_train']) > 0  # the JSON has boxes
    for i in range(len(unlabelled)):
        item = dataset[len(labelled) + i]
        assert item['inputs']['sup'] is None and item['data_samples']['sup'] is None
        for branch in ('unsup_teacher', 'unsup_student'):
            sample = item['data_samples'][branch]
            assert len(sample.gt_instances) == 0 and sample.gt_instances.bboxes.shape == (0, 4)
            assert sample.homography_matrix.shape == (3, 3)
            assert not {'pathology', 'label_hidden', 'instances'} & set(sample.metainfo)
    sup = dataset[0]['data_samples']
    assert sup['unsup_teacher'] is None and len(sup['sup'].gt_instances) == 1
    # a loader built like tools/train.py's: 2 iterations of 2 labelled + 2 unlabelled images per epoch
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    assert len(loader) == 2
    for batch in loader:
        samples = batch['data_samples']
        assert sum(s is not None for s in samples['sup']) == 2
        assert sum(s is not None for s in samples['unsup_student']) == 2


# ------------------------------------------------------------------------------------------------ model
def test_teacher_gets_no_gradient(semi_setup):
    cfg, _, batch = semi_setup
    model = build_model(cfg, pseudo_label_initial_score_thr=0.0, cls_pseudo_thr=0.0, image_score_thr=0.0,
                        rpn_pseudo_thr=0.0)
    assert not model.teacher.training  # frozen teacher: eval mode, even in a training run
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    losses, unsup = unsup_losses(model, batch)
    assert float(losses['unsup_num_images']) == 2
    assert float(total(unsup).detach()) > 0  # confident pseudo-boxes: the unlabelled images train the student
    parsed, _ = model.parse_losses(losses)
    parsed.backward()
    assert all(not p.requires_grad and p.grad is None for p in model.teacher.parameters())
    after = model.teacher.state_dict()  # weights and BatchNorm statistics: only the EMA hook changes them
    assert all(torch.equal(after[k], v) for k, v in teacher_before.items())
    grads = [p.grad for p in model.student.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_unconfident_unlabelled_images_give_a_zero_connected_loss(semi_setup):
    cfg, _, batch = semi_setup
    model = build_model(cfg, pseudo_label_initial_score_thr=1.0)  # no teacher box survives
    losses, unsup = unsup_losses(model, batch)
    assert unsup and float(losses['unsup_num_images']) == 0
    for key, value in unsup.items():
        value = torch.stack(list(value)).sum() if isinstance(value, (list, tuple)) else value
        assert value.requires_grad and float(value.detach()) == 0.0, key
    total(unsup).backward()  # still part of the graph
    grads = [p.grad for p in model.student.parameters()]
    assert all(g is not None for g in grads)  # a gradient tensor for every student parameter ...
    assert all(float(g.abs().sum()) == 0 for g in grads)  # ... and it is zero
    assert all(p.grad is None for p in model.teacher.parameters())
    # the labelled images still train the student
    assert float(sum(v for k, v in losses.items() if k.startswith('sup_loss') and not isinstance(v, list))) > 0


def test_only_confident_images_enter_the_unsupervised_losses(semi_setup):
    cfg, _, batch = semi_setup
    model = build_model(cfg, pseudo_label_initial_score_thr=0.0, cls_pseudo_thr=0.0, image_score_thr=0.0,
                        rpn_pseudo_thr=0.0)
    get_pseudo = model.get_pseudo_instances

    def second_image_unconfident(inputs, samples):
        samples, info = get_pseudo(inputs, samples)
        samples[1].gt_instances = samples[1].gt_instances[:0]
        return samples, info
    model.get_pseudo_instances = second_image_unconfident
    losses, unsup = unsup_losses(model, batch)
    assert float(losses['unsup_num_images']) == 1
    assert torch.isfinite(total(unsup)) and float(total(unsup).detach()) > 0


def test_semi_detector_loads_the_supervised_detector_and_exports_its_teacher(semi_setup, tmp_path):
    from mmbus.utils.checkpoint import check_checkpoint_fits
    cfg, _, _ = semi_setup
    path = str(tmp_path / 'supervised.pth')
    ref = save_supervised_detector(cfg, path)
    model = build_model(cfg)
    load_checkpoint(model, path, map_location='cpu', strict=True)  # no missing / unexpected key
    check_checkpoint_fits(model, torch.load(path), path)  # what CheckpointCheckHook checks
    for part in (model.student, model.teacher):
        state = part.state_dict()
        assert state.keys() == ref.keys()
        assert all(torch.equal(state[k], ref[k]) for k in ref)
    # and back: the teacher as a plain detector checkpoint, for the supervised detector's config
    with torch.no_grad():
        model.teacher.roi_head.bbox_head.fc_cls.weight.add_(1.0)
    semi_path, plain_path = str(tmp_path / 'semi.pth'), str(tmp_path / 'teacher.pth')
    torch.save(dict(meta=dict(epoch=3), state_dict=model.state_dict()), semi_path)
    export_teacher_detector(semi_path, plain_path)
    exported = torch.load(plain_path)
    assert exported['meta'] == dict(epoch=3) and exported['state_dict'].keys() == ref.keys()
    teacher = model.teacher.state_dict()
    assert all(torch.equal(exported['state_dict'][k], teacher[k]) for k in ref)
    with pytest.raises(ValueError, match='no teacher'):
        export_teacher_detector(path, str(tmp_path / 'x.pth'))


# ------------------------------------------------------------------------------------------------ training
def test_epochs_end_validate_and_stop_early(fixture_root, tmp_path):
    """EpochBasedTrainLoop over the sampler: 2-iteration epochs, teacher validated after each, early stop."""
    from mmengine.runner import Runner
    torch.set_num_threads(1)
    root, _ = fixture_root
    cfg = tiny_semi_cfg(root, str(tmp_path / 'work'), max_epochs=3, load_from=str(tmp_path / 'sup.pth'))
    sup_state = save_supervised_detector(cfg, cfg.load_from)
    # no improvement can reach min_delta: the run stops at the 2nd validation, before the 3rd epoch
    cfg.custom_hooks[1].update(patience=1, min_delta=1.0)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=True, interval=100, save_last=False)
    runner = Runner.from_cfg(cfg)
    validations = []

    class RecordMetrics(Hook):
        def after_val_epoch(self, runner, metrics=None):
            validations.append(dict(metrics or {}))
    runner.register_hook(RecordMetrics(), priority='LOWEST')
    runner.train()
    assert runner.epoch == 2 and runner.iter == 4  # 3 labelled images / 2 per batch = 2 iterations an epoch
    assert len(validations) == 2
    assert all('bus_box/mean_iou' in m and 'coco/bbox_mAP' in m for m in validations)
    key = 'roi_head.bbox_head.fc_cls.weight'
    teacher, student = runner.model.teacher.state_dict()[key], runner.model.student.state_dict()[key]
    assert not torch.equal(teacher, sup_state[key])  # the EMA teacher follows the student ...
    assert not torch.equal(teacher, student)  # ... slowly


# ------------------------------------------------------------------------------------------------ tools
@pytest.mark.slow
def test_cli_train_resume_and_test(fixture_root, tmp_path):
    """tools/train.py (2 epochs from a supervised checkpoint, then --resume for a 3rd) and tools/test.py."""
    root, _ = fixture_root
    work = str(tmp_path / 'work')
    cfg = tiny_semi_cfg(root, work, max_epochs=2, load_from=str(tmp_path / 'supervised.pth'))
    sup_state = save_supervised_detector(cfg, cfg.load_from)
    cfg_path = str(tmp_path / 'tiny_soft_teacher.py')
    cfg.dump(cfg_path)
    env = dict(os.environ, OMP_NUM_THREADS='1')

    def run(*args):
        proc = subprocess.run([PYTHON, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    log = run(osp.join(REPO, 'tools/train.py'), cfg_path)
    assert 'unsup_loss_cls' in log and 'sup_loss_cls' in log and 'bus_box/mean_iou' in log
    assert osp.exists(osp.join(work, 'epoch_2.pth'))
    log = run(osp.join(REPO, 'tools/train.py'), cfg_path, '--resume', '--cfg-options', 'train_cfg.max_epochs=3')
    assert 'resumed epoch: 2' in log
    ckpt = torch.load(osp.join(work, 'epoch_3.pth'), map_location='cpu')
    assert ckpt['meta']['epoch'] == 3 and ckpt['meta']['iter'] == 6  # 3 epochs of 2 iterations
    state = ckpt['state_dict']
    key = 'roi_head.bbox_head.fc_cls.weight'
    # the EMA teacher moved from the supervised weights, and stays apart from the student
    assert not torch.equal(state['teacher.' + key], sup_state[key])
    assert not torch.equal(state['teacher.' + key], state['student.' + key])
    log = run(osp.join(REPO, 'tools/test.py'), cfg_path, osp.join(work, 'epoch_3.pth'))
    assert 'coco/bbox_mAP' in log and 'bus_box/mean_iou' in log
