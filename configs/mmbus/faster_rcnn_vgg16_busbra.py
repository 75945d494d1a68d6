# The paper's detector on BUS-BRA (Gomez-Flores et al. 2024; 1875 grey images, 1064 patients),
# after converting and splitting it with the mmbus converter:
#   python tools/dataset_converters/... (see README) --> <data_root>/annotations/*.json
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_busbra.py \
#       --cfg-options train_dataloader.dataset.data_root=/path/BUSBRA/ \
#                     val_dataloader.dataset.data_root=/path/BUSBRA/ ...
# or copy this file and change `data_root` (annotation paths of the evaluators derive from it).
# BUS-BRA images are 8-bit grey PNGs; LoadImageFromFile(color_type='color') repeats the grey
# channel three times, as VGG16's ImageNet weights expect.
_base_ = ['./faster_rcnn_vgg16_bus.py']

data_root = 'data/BUS-BRA/BUSBRA/'
train_ann_file = 'annotations/basic_train.json'
val_ann_file = 'annotations/val.json'
test_ann_file = 'annotations/test.json'

train_dataloader = dict(dataset=dict(data_root=data_root, ann_file=train_ann_file))
val_dataloader = dict(dataset=dict(data_root=data_root, ann_file=val_ann_file))
test_dataloader = dict(dataset=dict(data_root=data_root, ann_file=test_ann_file))
val_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + val_ann_file, metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
test_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + test_ann_file, metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
