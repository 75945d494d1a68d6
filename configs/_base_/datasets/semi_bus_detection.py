# Semi-supervised detection data (SoftTeacher): labelled basic-train images through the supervised detector's
# own training pipeline (branch 'sup'), unlabelled extended-train images through a weak view for the teacher
# and a strong view for the student. A soft_teacher_* config inherits this next to its detector and sets
#   train_dataloader = dict(batch_size=L + U, batch_sampler=None,
#       sampler=dict(_delete_=True, **_base_.semi_sampler, num_labelled=L, num_unlabelled=U),
#       dataset=dict(_delete_=True, **_base_.semi_dataset, labelled=_base_.train_dataloader.dataset,
#                    img_scale=_base_.img_scale))
# LabelledUnlabelledDetDataset puts the pipelines together from the detector's (an mmengine base cannot read
# the config that inherits it).
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
# Unlabelled views carry no image-level label (no pathology): what the teacher and student may know.
unsup_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                   'homography_matrix')
# Weak view (teacher): the detector's own resize (to its img_scale), a flip.
weak_view = [dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip', prob=0.5, direction='horizontal'),
             dict(type='PackDetInputs', meta_keys=unsup_meta_keys)]
# Strong view (student): a +-20 % scale jitter around the detector's img_scale, then ultrasound-safe:
# horizontal flips only, rotations of a few degrees, monotone photometric jitter (a hypoechoic nodule stays
# darker than its surroundings: no solarize/posterize), cut-outs smaller than a nodule. mmdet's geometric
# transforms record the homography that maps the teacher's boxes onto this view.
strong_view = [
    dict(type='RandomResize', ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomOrder', transforms=[
        dict(type='RandAugment', aug_num=1, aug_space=[
            [dict(type=t, min_mag=0.6, max_mag=1.4)] for t in ('Brightness', 'Contrast', 'Sharpness')]
            + [[dict(type='AutoContrast')], [dict(type='Equalize')]]),
        dict(type='RandAugment', aug_num=1, aug_space=[
            [dict(type='TranslateX', max_mag=0.1)], [dict(type='TranslateY', max_mag=0.1)],
            [dict(type='Rotate', max_mag=5.0)]]),
    ]),
    dict(type='RandomErasing', n_patches=(1, 3), ratio=(0, 0.1)),
    dict(type='PackDetInputs', meta_keys=unsup_meta_keys)]
# The unlabelled split. filter_empty_gt=False: which unlabelled images train must not depend on their hidden
# boxes; LoadEmptyAnnotations (in the pipeline): those boxes never reach a data sample.
unlabelled_split = dict(ann_file='annotations/extended_train.json',
                        filter_cfg=dict(filter_empty_gt=False, min_size=32))
semi_dataset = dict(type='LabelledUnlabelledDetDataset', unlabelled=unlabelled_split,
                    views=dict(unsup_teacher=weak_view, unsup_student=strong_view), branch_field=branch_field)
# Finite epochs (one pass over the labelled images) of fixed labelled/unlabelled batches, no aspect-ratio
# grouping: every batch keeps its composition.
semi_sampler = dict(type='LabelledUnlabelledDetSampler', epoch_length='labelled')
