# FixMatch beside the paper's mean teacher: labelled basic-train crops + unlabelled extended-train crops
# (64 + 64 per batch), weak view -> pseudo-label where its confidence reaches 0.95, strong view of the same
# crop trained on it (lambda_u = 1); predictions from the EMA teacher.
_base_ = ['./mean_teacher_bus.py']
model = dict(
    type='FixMatchClassifier', threshold=0.95, consistency_weight=1.0, rampup_iters=0,
    pseudo_label_from='student',
    # weak view: flip, +-2 px shifts, small brightness change, input noise
    view_augment=dict(type='BatchViewAugment', translate=2, brightness=0.1, noise_std=0.05),
    strong_augment=dict(type='StrongViewAugment'))
