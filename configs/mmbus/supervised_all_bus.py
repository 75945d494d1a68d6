# Paper Table 3, "supervisor b": basic-train + extended-train crops, all labelled (hidden labels revealed).
_base_ = [
    '../_base_/models/mean_teacher_convnet_supervised.py', '../_base_/datasets/bus_crops_all.py',
    '../_base_/schedules/schedule_cls_40k.py', '../_base_/default_runtime_cls.py'
]
default_hooks = dict(checkpoint=dict(save_best='diag/auc_smooth'))
