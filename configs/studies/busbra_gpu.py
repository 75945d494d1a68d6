# BUS-BRA (Gomez-Flores et al. 2024) at paper scale on one GPU, both stages side by side: the kit that
# tools/gpu/run_busbra.sh runs on a lent machine within its budget (every training run ends cleanly at
# $MMBUS_STOP_AT, keeping its best checkpoint on validation).
#   python tools/run_study.py configs/studies/busbra_gpu.py --jobs 24 --keep-going --device cuda \
#       --cfg-options data.root=gpu_kit/busbra
# Data: a converted, split copy (data.type='coco'; tools/gpu/prepare_kit.py makes it with the split of
# configs/studies/busbra_stage2.py: 12 % basic-train, 58 % extended-train, 10 % validation, 20 % test).
# Stage 1: the supervised VGG16 Faster R-CNN on basic-train boxes from scratch (through tools/dist_train.sh:
# torchrun, nccl), its upper bound on basic + extended boxes, and GatedSoftTeacher (labelled basic-train +
# unlabelled extended-train) started from the supervised one. Stage 2: mean teacher, FixMatch, supervised-basic
# and supervised-all at the paper's recogniser size (full width, 64 px crops) over three labelled draws at 5 %
# and a learning curve (10, 20, 40 %, seed 0). The two stages together: the test crops of the supervised
# detector's boxes, classified by every stage-2 model (misses count as wrong answers).
name = 'busbra_gpu'
work_dir = 'work_dirs/busbra_gpu'
schedule = 'paper'
data = dict(type='coco', root='gpu_kit/busbra', title='BUS-BRA test split')
detector = dict(config='configs/mmbus/faster_rcnn_vgg16_busbra_gpu.py', gpus=1, budget_share=0.5,
                title='stage 1: supervised Faster R-CNN VGG16 on basic-train boxes (torchrun)')
detectors = dict(
    soft_teacher=dict(config='configs/mmbus/soft_teacher_faster_rcnn_vgg16_busbra_gpu.py', init='detector',
                      train_splits=['basic_train', 'extended_train'],
                      title='stage 1: GatedSoftTeacher, basic-train boxes + unlabelled extended-train images'),
    upper=dict(config='configs/mmbus/faster_rcnn_vgg16_busbra_all_gpu.py',
               train_splits=['basic_train', 'extended_train'],
               title='stage 1: supervised Faster R-CNN VGG16 on basic + extended boxes (upper bound)'))
crops = dict(gt=dict(boxes='ground_truth', external=False),
             det=dict(boxes='detector', detector='detector', splits=['test'], gt_splits=[], external=False))
train_crops = 'gt'
_m = 'configs/mmbus/{}_bus_gpu.py'
methods = {m: dict(config=_m.format(m)) for m in ('mean_teacher', 'fixmatch', 'supervised_basic', 'supervised_all')}
grid = [dict(labelled_share=[0.05], seed=[0, 1, 2]),
        dict(labelled_share=[0.10, 0.20, 0.40], seed=[0], methods=['mean_teacher', 'fixmatch', 'supervised_basic'])]
test_sets = [dict(name='gt', crops='gt', split='test', title='BUS-BRA test crops (ground-truth boxes)'),
             dict(name='det', crops='det', split='test', title='BUS-BRA test crops (detector boxes)')]
report = dict(type='comparison', baseline='supervised_basic', x='seed', where=dict(labelled_share=0.05),
              title='BUS-BRA at paper scale on one GPU: four methods over three labelled draws (5 % labelled)',
              targets=dict(test_set='gt', ssl=['mean_teacher', 'fixmatch'], upper='supervised_all',
                           gain=0.05, p=0.05, min_significant=2, gap=0.02),
              curves=[dict(name='learning_curve', x='labelled_share', where=dict(seed=0),
                           title='Learning curve (seed 0): test AUC against the labelled share')])
# --schedule toy (the CPU test of the kit, on a few dozen images): the same configs cut to a few iterations
# and small batches, two grid points (one with the learning-curve methods only)
_loaders = {f'{d}_dataloader.{k}': v for d in ('train', 'val', 'test')
            for k, v in (('num_workers', 0), ('persistent_workers', False))}
_det_toy = dict(_loaders, **{'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2,
                             'default_hooks.checkpoint.interval': 2, 'train_dataloader.batch_size': 2,
                             'param_scheduler.0.end': 2, 'param_scheduler.1.end': 2, 'param_scheduler.1.T_max': 2})
_semi = {'train_dataloader.batch_size': 4, 'train_dataloader.sampler.num_labelled': 2,
         'train_dataloader.sampler.num_unlabelled': 2, 'train_dataloader.sampler.allow_repeats': True}
_sup = {'train_dataloader.batch_size': 4, 'train_dataloader.sampler.num_labelled': 4,
        'train_dataloader.sampler.allow_repeats': True}
toy = dict(detector=_det_toy,
           detectors=dict(upper=_det_toy,
                          soft_teacher=dict(_loaders, **{'train_cfg.max_epochs': 1, 'train_dataloader.batch_size': 2,
                                                         'train_dataloader.sampler.num_labelled': 1,
                                                         'train_dataloader.sampler.num_unlabelled': 1,
                                                         'train_dataloader.sampler.epoch_length': 2})),
           classifier=dict(_loaders, **{'train_cfg.max_epochs': 1, 'train_dataloader.sampler.epoch_length': 2,
                                        'default_hooks.logger.interval': 1}),
           methods=dict(mean_teacher=_semi, fixmatch=_semi, supervised_basic=_sup, supervised_all=_sup),
           grid=[dict(labelled_share=[0.05], seed=[0]),
                 dict(labelled_share=[0.10], seed=[0], methods=['mean_teacher'])])
