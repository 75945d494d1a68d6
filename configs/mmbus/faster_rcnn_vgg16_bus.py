# Stage 1 of the paper: two-class (background / nodule) Faster R-CNN with VGG16, ImageNet
# initialised (conv layers AND fc6/fc7 into the box head's two 4096-d FCs), shallow fine-tuning
# with VGG16 frozen for 5000 iterations, then deep fine-tuning; SGD lr 0.001 exponential decay,
# momentum 0.9, 70k iterations, one image and 128 RoIs per iteration.
#   python tools/train.py configs/mmbus/faster_rcnn_vgg16_bus.py
#   python tools/test.py configs/mmbus/faster_rcnn_vgg16_bus.py CKPT --show-dir vis
# A local ImageNet VGG16 file (mmpretrain's, or torchvision's vgg16-397923af.pth: VGGImageNetInit maps both)
# goes to the backbone's and the box head's init in one line (a config variable set by --cfg-options
# would not reach them, they were filled in at load time):
#   --cfg-options model.backbone.init_cfg.checkpoint=VGG.pth model.roi_head.bbox_head.init_cfg.3.checkpoint=VGG.pth
_base_ = [
    '../_base_/models/faster_rcnn_vgg16.py',
    '../_base_/datasets/bus_detection.py',
    '../_base_/schedules/schedule_det_70k.py',
    '../_base_/default_runtime_det.py',
]

# mmpretrain's ImageNet VGG16 (vgg16_batch256_imagenet_20210208-db26f1a5.pth);
# torchvision alternative: 'https://download.pytorch.org/models/vgg16-397923af.pth'.
vgg16_imagenet = ('https://download.openmmlab.com/mmclassification/v0/vgg/'
                  'vgg16_batch256_imagenet_20210208-db26f1a5.pth')

model = dict(
    backbone=dict(
        init_cfg=dict(type='VGGImageNetInit', checkpoint=vgg16_imagenet, part='features')),
    roi_head=dict(
        bbox_head=dict(init_cfg=[
            # mmdet's defaults for the new layers (an explicit init_cfg replaces them) ...
            dict(type='Normal', std=0.01, override=dict(name='fc_cls')),
            dict(type='Normal', std=0.001, override=dict(name='fc_reg')),
            dict(type='Xavier', distribution='uniform', override=dict(name='shared_fcs')),
            # ... then fc6/fc7 of the ImageNet classifier into shared_fcs.0/1 (runs last).
            dict(type='VGGImageNetInit', checkpoint=vgg16_imagenet, part='fc67'),
        ])))

# Shallow fine-tuning for 5000 iterations (backbone frozen), then deep fine-tuning.
custom_hooks = [dict(type='TwoPhaseFineTuneHook', freeze_iters=5000, modules=('backbone', ))]
