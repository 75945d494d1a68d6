# CPU-sized supervised baseline on the labelled basic-train crops (same network, crops and views as
# mean_teacher_bus_cpu_quick.py; batches of 32 labelled crops; half its iterations).
_base_ = [
    '../_base_/models/mean_teacher_convnet_supervised.py', '../_base_/datasets/bus_crops_cpu_quick.py',
    '../_base_/schedules/schedule_cls_cpu_quick.py', '../_base_/default_runtime_cls.py'
]
widen_factor = 0.25
model = dict(backbone=dict(widen_factor=widen_factor), head=dict(in_channels=int(128 * widen_factor)),
             # the cpu-quick mean teacher student's views (+-2 px shifts, +-15 % zoom, +-20 % contrast added):
             # the twin differs from it by the unlabelled crops alone
             data_preprocessor=dict(batch_augments=dict(augments=dict(translate=2, zoom=0.15, contrast=0.2))))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(save_best='diag/auc_smooth'))
