# The clinician's view on BUS-BRA (Gomez-Flores et al. 2024) from a CPU: the mean teacher and its supervised
# twin at 5 % labelled (one draw), each calibrated on its validation crops (temperature, thresholds for 95 % /
# 90 % sensitivity and Youden's index) and tested with those settings unchanged; the mean teacher is exported
# as the model bundle (ONNX + calibration + model card) that tools/serve.py serves.
#   python tools/run_study.py configs/studies/busbra_clinical.py --jobs 2 --cfg-options data.root=gpu_kit/busbra
# Data: the converted, split BUS-BRA copy of tools/gpu/prepare_kit.py (the split of busbra_stage2.py).
name = 'busbra_clinical'
work_dir = 'work_dirs/busbra_clinical'
schedule = 'cpu-quick'
data = dict(type='coco', root='gpu_kit/busbra', title='BUS-BRA test split')
detector = None
crops = dict(gt=dict(boxes='ground_truth', external=False))
train_crops = 'gt'
# As run: the cpu-quick views before zoom and contrast were added (chosen afterwards on validation crops,
# busbra_stage2_selection_views.py); these overrides reproduce the figures reported from this spec.
_mt_views = {'model.view_augment.zoom': 0.0, 'model.view_augment.contrast': 0.0}
_sup_views = {'model.data_preprocessor.batch_augments.augments.zoom': 0.0,
              'model.data_preprocessor.batch_augments.augments.contrast': 0.0}
methods = dict(mean_teacher=dict(overrides=_mt_views), supervised_basic=dict(overrides=_sup_views))
grid = dict(labelled_share=[0.05], seed=[0])
test_sets = [dict(name='gt', crops='gt', split='test', title='BUS-BRA test crops (ground-truth boxes)')]
export_teacher = True
# the mean teacher as the portable bundle (ONNX + calibration + model card) tools/serve.py serves
export_bundle = dict(card=dict(
    description='Benign / malignant recogniser of breast-ultrasound nodule crops, trained semi-supervised (mean '
                'teacher) on 5 % labelled BUS-BRA crops; a CPU-sized model (1/4 width, 32 px crops).',
    training_data='BUS-BRA (Gomez-Flores et al. 2024, Medical Physics): 1875 images of 1064 patients, 4 scanners, '
                  'biopsy-proven pathology; crops from the doctors\' boxes plus a 10 px margin',
    license='the code: Apache-2.0; the data: BUS-BRA\'s own licence'))
report = dict(type='comparison', baseline='supervised_basic', x='seed',
              title='BUS-BRA, 5 % labelled: calibration and operating points of the mean teacher and its twin')
toy = dict(classifier={'train_cfg.max_epochs': 1, 'train_dataloader.sampler.epoch_length': 3,
                       'default_hooks.logger.interval': 1},
           methods={m: {'train_dataloader.sampler.allow_repeats': True} for m in ('mean_teacher', 'supervised_basic')})
