# The paper's detector on BUS-BRA (Gomez-Flores et al. 2024; 1875 grey images, 1064 patients).
# 1. convert + split (annotations written next to the images, file_name relative to the root):
#   python tools/dataset_converters/bus_to_coco.py --format busbra data/BUS-BRA/BUSBRA \
#       --out-dir data/BUS-BRA/BUSBRA --split counts \
#       --counts basic_train=400,val=100,test=375,extended_train=rest --balanced basic_train,val
# 2. train / test:
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_busbra.py
#   python tools/test.py configs/mmbus/faster_rcnn_vgg16_busbra.py CKPT --show-dir vis
# Elsewhere than data/BUS-BRA/BUSBRA: copy this file and change `data_root` (the evaluators'
# ann_file paths derive from it), or override every path, since --cfg-options cannot change a
# config variable after it was used:
#   --cfg-options train_dataloader.dataset.data_root=R val_dataloader.dataset.data_root=R \
#     test_dataloader.dataset.data_root=R val_evaluator.0.ann_file=R/annotations/val.json \
#     test_evaluator.0.ann_file=R/annotations/test.json
# BUS-BRA images are 8-bit grey PNGs; LoadImageFromFile(color_type='color') repeats the grey
# channel three times, as VGG16's ImageNet weights expect.
_base_ = ['./faster_rcnn_vgg16_bus.py']

data_root = 'data/BUS-BRA/BUSBRA/'
# the converter's annotations/{basic_train,val,test}.json under BUS-BRA's data_root
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + _base_.val_ann_file, metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
test_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + _base_.test_ann_file, metric='bbox'),
    dict(type='BoxIoUMetric', best_box='top_score'),
]
