# Upper bound of the BUS-BRA detector: faster_rcnn_vgg16_busbra_gpu.py trained on the boxes of basic-train and
# extended-train together (what the semi-supervised detector sees without them).
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_busbra_all_gpu.py
_base_ = ['./faster_rcnn_vgg16_busbra_gpu.py']
_labelled = _base_.train_dataloader.dataset
train_dataloader = dict(dataset=dict(
    _delete_=True, type='ConcatDataset',
    datasets=[_labelled, dict(_labelled, ann_file='annotations/extended_train.json')]))
