# SoftTeacher (mmdet) as GatedSoftTeacher: images without a confident pseudo-box add no loss. The
# soft_teacher_* configs wrap their supervised detector with these settings:
#   model = dict(_delete_=True, detector=detector, data_preprocessor=..., **soft_teacher)
# SoftTeacher's published values; image_score_thr: see GatedSoftTeacher.
soft_teacher = dict(
    type='GatedSoftTeacher',
    semi_train_cfg=dict(
        freeze_teacher=True, sup_weight=1.0, unsup_weight=4.0, pseudo_label_initial_score_thr=0.5,
        rpn_pseudo_thr=0.9, cls_pseudo_thr=0.9, image_score_thr=0.9, reg_pseudo_thr=0.02, jitter_times=10,
        jitter_scale=0.06, min_pseudo_bbox_wh=(1e-2, 1e-2)),
    semi_test_cfg=dict(predict_on='teacher'))
