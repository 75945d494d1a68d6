# CPU-sized FixMatch: the cpu-quick mean teacher's network, crops, batches and schedule with FixMatch's loss.
_base_ = ['./mean_teacher_bus_cpu_quick.py']
model = dict(
    type='FixMatchClassifier', threshold=0.95, consistency_weight=1.0, rampup_iters=0,
    pseudo_label_from='student',
    view_augment=dict(_delete_=True, type='BatchViewAugment', translate=2, brightness=0.1, noise_std=0.05),
    strong_augment=dict(type='StrongViewAugment'))
