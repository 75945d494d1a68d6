# CPU-sized supervised baseline on the labelled basic-train crops (same network, crops and views as
# mean_teacher_bus_cpu_quick.py; batches of 32 labelled crops; half its iterations).
_base_ = [
    '../_base_/models/mean_teacher_convnet_supervised.py', '../_base_/datasets/bus_crops_cpu_quick.py',
    '../_base_/schedules/schedule_cls_cpu_quick.py', '../_base_/default_runtime_cls.py'
]
widen_factor = 0.25
model = dict(backbone=dict(widen_factor=widen_factor), head=dict(in_channels=int(128 * widen_factor)),
             # same views as the cpu-quick mean teacher student (+-2 px translations added)
             data_preprocessor=dict(batch_augments=dict(augments=dict(translate=2))))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(save_best='diag/auc_smooth'))
