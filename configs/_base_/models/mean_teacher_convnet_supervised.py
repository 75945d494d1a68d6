# The same recognition network trained supervised (plain mmpretrain ImageClassifier), with the same batch
# augmentation as the mean-teacher student (flip, brightness, input noise 0.15) and dropout 0.5.
widen_factor = 1.0
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor', mean=[127.5], std=[127.5], to_rgb=False, num_classes=2,
        batch_augments=dict(augments=dict(type='BatchViewAugment', flip_prob=0.5, brightness=0.2,
                                          noise_std=0.15))),
    backbone=dict(type='MTConvNet', in_channels=1, widen_factor=widen_factor, dropout=0.5),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=int(128 * widen_factor),
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
