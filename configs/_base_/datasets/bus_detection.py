# Breast-ultrasound nodule boxes (mmbus COCO format, see the data contract) for mmdet.
# Detector: trained on basic_train, validated on val, tested on test. file_name in the JSON is
# relative to the dataset root, hence data_root = dataset root and an empty image prefix.
dataset_type = 'BUSDataset'
data_root = 'data/bus_synthetic/hospital_a/'
train_ann_file = 'annotations/basic_train.json'
val_ann_file = 'annotations/val.json'
test_ann_file = 'annotations/test.json'
# (width, height) bound for Resize with keep_ratio: the short side goes to 600 px unless the
# long side would pass 1000 px (original Faster R-CNN scale).
img_scale = (1000, 600)
backend_args = None
# Image-level keys of BUSDataset forwarded into every data sample (later stages use them).
bus_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                 'flip_direction', 'file_name', 'pathology', 'patient_id', 'source',
                 'label_hidden')

# Ultrasound-minded: grey images read as 3 equal channels ('color' on a grey PNG), aspect
# ratio kept, horizontal flips only (orientation, e.g. taller-than-wide, is diagnostic).
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackDetInputs', meta_keys=bus_meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    # Ground truth is loaded at test time too: BoxIoUMetric reads it from the data sample.
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=bus_meta_keys),
]
train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=train_ann_file,
        data_prefix=dict(img=''),
        # Normal images (no nodule box) are left out of detector training (the paper trains on
        # the boxes of the basic training set); BUSDataset logs how many were left out.
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=val_ann_file,
        data_prefix=dict(img=''),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=test_ann_file,
        data_prefix=dict(img=''),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
# COCO mAP beside the paper's box IoU (ASC), FROC and hit rate (keys coco/... and bus_box/...).
val_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + val_ann_file, metric='bbox',
         format_only=False, backend_args=backend_args),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
test_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + test_ann_file, metric='bbox',
         format_only=False, backend_args=backend_args),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
