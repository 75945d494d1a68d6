# CPU-sized supervised upper bound: basic-train + extended-train crops, all labels revealed.
_base_ = ['./supervised_all_bus.py', '../_base_/datasets/bus_crops_cpu_quick.py']
widen_factor = 0.25
model = dict(backbone=dict(widen_factor=widen_factor), head=dict(in_channels=int(128 * widen_factor)),
             # same views as the cpu-quick mean teacher student (+-2 px translations added)
             data_preprocessor=dict(batch_augments=dict(augments=dict(translate=2))))
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    sampler=dict(num_labelled=32, num_unlabelled=0, epoch_length=20),
    dataset=dict(datasets=[{{_base_.quick_basic_train}}, {{_base_.quick_extended_labelled}}]))
val_dataloader = {{_base_.quick_val_dataloader}}
test_dataloader = {{_base_.quick_test_dataloader}}
train_cfg = {{_base_.quick_train_cfg}}
param_scheduler = {{_base_.quick_param_scheduler}}
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(save_best='diag/auc_smooth'))
custom_hooks = {{_base_.quick_supervised_hooks}}
