# Mean teacher data: labelled basic-train crops + unlabelled extended-train crops (gt_label -1); every batch
# holds 64 labelled + 64 unlabelled crops (paper). One epoch = 100 iterations.
_base_ = ['./bus_crops.py']
num_labelled = 64
num_unlabelled = 64
train_dataloader = dict(
    batch_size=num_labelled + num_unlabelled,
    sampler=dict(_delete_=True, type='LabelledUnlabelledSampler', num_labelled=num_labelled,
                 num_unlabelled=num_unlabelled, epoch_length=100),
    dataset=dict(
        _delete_=True, type='ConcatDataset',
        datasets=[_base_.train_dataloader.dataset,
                  dict(_base_.train_dataloader.dataset, ann_file='extended_train.json')]))
# Validation reports the teacher and the student (SemiClassifier.predict_student_too=True).
val_evaluator = [
    dict(type='BinaryDiagnosticMetric', prefix='teacher'),
    dict(type='BinaryDiagnosticMetric', prefix='student', score_key='student_pred_score'),
]
test_evaluator = [
    dict(type='BinaryDiagnosticMetric', prefix='teacher', missed={{_base_.test_missed}}),
]
