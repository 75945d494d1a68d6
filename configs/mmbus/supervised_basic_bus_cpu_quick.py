# CPU-sized supervised baseline on the labelled basic-train crops (same network, crops and views as
# mean_teacher_bus_cpu_quick.py; batches of 32 labelled crops; half its iterations: it levels off sooner).
_base_ = ['./supervised_basic_bus.py', '../_base_/datasets/bus_crops_cpu_quick.py']
widen_factor = 0.25
model = dict(backbone=dict(widen_factor=widen_factor), head=dict(in_channels=int(128 * widen_factor)),
             # same views as the cpu-quick mean teacher student (+-2 px translations added)
             data_preprocessor=dict(batch_augments=dict(augments=dict(translate=2))))
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    sampler=dict(num_labelled=32, num_unlabelled=0, epoch_length=20),
    dataset={{_base_.quick_basic_train}})
val_dataloader = {{_base_.quick_val_dataloader}}
test_dataloader = {{_base_.quick_test_dataloader}}
train_cfg = {{_base_.quick_train_cfg}}
param_scheduler = {{_base_.quick_param_scheduler}}
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(save_best='diag/auc_smooth'))
custom_hooks = {{_base_.quick_supervised_hooks}}
