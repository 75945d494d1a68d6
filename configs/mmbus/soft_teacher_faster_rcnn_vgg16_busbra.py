# SoftTeacher (soft_teacher_faster_rcnn_vgg16_bus.py) on BUS-BRA, converted and split as in
# faster_rcnn_vgg16_busbra.py (its extended_train split gives the unlabelled images):
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_busbra.py
#   python tools/train.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_busbra.py
#   python tools/test.py configs/mmbus/soft_teacher_faster_rcnn_vgg16_busbra.py CKPT
_base_ = ['./soft_teacher_faster_rcnn_vgg16_bus.py']

data_root = 'data/BUS-BRA/BUSBRA/'
load_from = 'work_dirs/faster_rcnn_vgg16_busbra/iter_70000.pth'

# the unlabelled split follows the labelled one's data_root
train_dataloader = dict(dataset=dict(labelled=dict(data_root=data_root)))
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
