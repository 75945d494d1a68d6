# Runtime for the mmbus detectors (mmdet scope, iteration-based logging/checkpoints).
default_scope = 'mmdet'
custom_imports = dict(imports=['mmbus.registry'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # iteration-based training: validation metrics logged at their iteration, not at 'epoch' 0
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3,
                    save_best='bus_box/mean_iou', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir switches draw on; BUSDetVisualizer draws the doctor's box in
    # yellow and the detector's top box in red (paper, Figure 3).
    visualization=dict(type='DetVisualizationHook', score_thr=0.05),
    # random-number state (Python, NumPy, torch, sampler) in every checkpoint, so --resume repeats the
    # uninterrupted run bit for bit; refuse impossible training data before the first iteration.
    random_state=dict(type='RandomStateHook'),
    data_check=dict(type='TrainDataCheckHook'),
    # training ends cleanly at $MMBUS_STOP_AT (a Unix time) when a launcher sets it; inactive otherwise
    deadline=dict(type='DeadlineHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='BUSDetVisualizer', vis_backends=vis_backends, name='visualizer',
                  top_k=1)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
