# Nodule crops (written by tools/extract_crops.py) for the benign (0) / malignant (1) classifier.
# Crops are read grey-scale and letterboxed to crop_size x crop_size pixels (aspect ratio kept: nodule
# orientation is diagnostic). The paper does not give its input size; 64 px keeps the texture of the
# typical 40-150 px nodule box while the recognition network stays cheap.
# Augmentation (flip, brightness, input noise 0.15) is done on the batch by the model (SemiClassifier's
# view_augment / ImageClassifier's batch_augments) so student and teacher get independent views.
dataset_type = 'BUSCropDataset'
data_root = 'data/bus_synthetic/crops/'
crop_size = 64
# detector misses of the test split (written by tools/extract_crops.py); counted as failures
test_missed = data_root + 'test_missed.json'

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='LetterboxResize', size=crop_size),
    dict(type='PackInputs'),
]
test_pipeline = train_pipeline

# supervised_basic: labelled basic-train crops only. Batches of 128; one epoch = 100 iterations.
train_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='LabelledUnlabelledSampler', num_labelled=128, num_unlabelled=0, epoch_length=100),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='basic_train.json', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='val.json', pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='test.json', pipeline=test_pipeline,
                 test_mode=True))
val_evaluator = [dict(type='BinaryDiagnosticMetric', prefix='diag')]
# Test: images where the detector found no nodule count as failures (see BinaryDiagnosticMetric).
test_evaluator = [dict(type='BinaryDiagnosticMetric', prefix='diag', missed=test_missed)]
