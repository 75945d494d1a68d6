# Mean-teacher recognition network (paper, Fig. 2): student + EMA teacher MTConvNet (ConvNet-Large of the
# original mean teacher: 3 x (3 conv + max-pool + dropout 0.5), 2 conv, global average pooling, linear head),
# grey-scale input scaled to [-1, 1].
widen_factor = 1.0
model = dict(
    type='SemiClassifier',
    data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5], std=[127.5], to_rgb=False),
    backbone=dict(type='MTConvNet', in_channels=1, widen_factor=widen_factor, dropout=0.5),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=int(128 * widen_factor),
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    # independent views for student and teacher: h-flip (never vertical: orientation is diagnostic),
    # brightness +-0.2, Gaussian input noise 0.15 (paper), in [-1, 1] input units
    view_augment=dict(type='BatchViewAugment', flip_prob=0.5, brightness=0.2, noise_std=0.15),
    consistency='mse',          # mean squared error between softmax outputs (original mean teacher)
    consistency_weight=50.0,    # w_max of the paper authors' code (original mean teacher: 100)
    rampup_iters=10000,         # sigmoid ramp-up exp(-5 (1 - t/T)^2), T = 1/4 of the 40k iterations
    consistency_on='unlabelled',
    predict_with='teacher',
    predict_student_too=True)   # validation reports teacher/* and student/*
