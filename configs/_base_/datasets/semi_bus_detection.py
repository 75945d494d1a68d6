# Semi-supervised detection data (SoftTeacher): labelled basic-train images through the supervised detector's
# own training pipeline (branch 'sup'), unlabelled extended-train images through a weak view for the teacher
# and a strong view for the student. These are the parts that do not depend on the detector; each
# soft_teacher_* config puts them together with its detector's training pipeline and input size (an mmengine
# base is evaluated before, and apart from, the config that inherits it, so it cannot read those itself).
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
# Unlabelled views carry no image-level label (no pathology): what the teacher and student may know.
unsup_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                   'homography_matrix')
# Weak view (teacher), after the detector's own resize (Resize to img_scale).
weak_view = [dict(type='RandomFlip', prob=0.5, direction='horizontal'),
             dict(type='PackDetInputs', meta_keys=unsup_meta_keys)]
# Strong view (student), after a +-20 % scale jitter around img_scale (RandomResize). Ultrasound-safe:
# horizontal flips only, rotations of a few degrees, monotone photometric jitter (a hypoechoic nodule stays
# darker than its surroundings: no solarize/posterize), cut-outs smaller than a nodule. mmdet's geometric
# transforms record the homography that maps the teacher's boxes onto this view.
strong_view = [
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
