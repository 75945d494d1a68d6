# SoftTeacher (soft_teacher_faster_rcnn_vgg16_bus.py) on BUS-BRA, converted and split as in
# faster_rcnn_vgg16_busbra.py (its extended_train split gives the unlabelled images):
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_busbra.py
#   python tools/train.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_busbra.py
#   python tools/test.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_busbra.py CKPT
_base_ = ['./soft_teacher_faster_rcnn_vgg16_bus.py']

data_root = 'data/BUS-BRA/BUSBRA/'
load_from = 'work_dirs/faster_rcnn_vgg16_busbra/iter_70000.pth'

labelled_dataset = _base_.labelled_dataset
labelled_dataset.data_root = data_root
unlabelled_dataset = _base_.unlabelled_dataset
unlabelled_dataset.data_root = data_root
train_dataloader = dict(dataset=dict(datasets=[labelled_dataset, unlabelled_dataset]))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + 'annotations/val.json', metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
test_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + 'annotations/test.json', metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
