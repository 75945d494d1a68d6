# Runtime for the mmbus nodule classifiers (mmpretrain scope, epoch-based loops whose epoch length is set by
# LabelledUnlabelledSampler.epoch_length).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmbus.registry'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the last checkpoint (for --resume) and the best one on validation AUC (paper: best model on the
    # validation set is retained). Configs with a teacher monitor 'teacher/auc'.
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, save_best='diag/auc', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # random-number state (Python, NumPy, torch, sampler) in every checkpoint, so --resume repeats the
    # uninterrupted run bit for bit; refuse impossible training data (one class, batch_size mismatch).
    random_state=dict(type='RandomStateHook'),
    data_check=dict(type='TrainDataCheckHook'),
    # training ends cleanly at $MMBUS_STOP_AT (a Unix time) when a launcher sets it; inactive otherwise
    deadline=dict(type='DeadlineHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
