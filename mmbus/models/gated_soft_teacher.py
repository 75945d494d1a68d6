"""GatedSoftTeacher: mmdet's SoftTeacher whose unsupervised losses come only from unlabelled images on
which the teacher found a confident box.

Stock SoftTeacher trains the student on every unlabelled image: an image without confident pseudo-box
becomes an all-background image for the RPN and the box classifier. On breast ultrasound (about one nodule
per image) such an image mostly holds a nodule the teacher missed, so that background target teaches the
student to miss it too. Here an unlabelled image takes part in the unsupervised losses only when one of its
pseudo-boxes scores above ``semi_train_cfg.image_score_thr`` (default ``cls_pseudo_thr``); the other images
are left out of the batch. When no image of the batch qualifies, the unsupervised losses are computed as
usual and multiplied by zero (as ``SemiBaseDetector`` does), so they are exactly zero, still part of the
graph (DDP-safe) and logged under the same keys. ``unsup_num_images`` logs how many images contributed.

A frozen teacher also stays in eval mode during training (stock SoftTeacher leaves it in train mode, so a
BatchNorm backbone would normalise the teacher's pseudo-labelling with the batch statistics of the unlabelled
images and overwrite its running statistics); the EMA hook with ``skip_buffer=False`` carries the student's
statistics over instead.

Everything else (teacher pseudo-labels, box jitter uncertainty, soft background weights, EMA teacher via
mmdet's ``MeanTeacherHook``, teacher predictions at test time) is mmdet's SoftTeacher unchanged.

``tools/export_teacher_detector.py`` (:func:`mmbus.apis.export.export_teacher_detector`) turns a checkpoint
of this model into a plain detector checkpoint (the teacher's weights) for the detector's own config, e.g. for
crop extraction.
"""
from typing import Optional

import torch
from mmdet.models.detectors import SoftTeacher
from mmdet.models.utils import reweight_loss_dict
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor


def _subset_batch_info(batch_info: dict, keep: list, index: Tensor) -> dict:
    """``batch_info`` of SoftTeacher.get_pseudo_instances restricted to the images ``keep``."""
    out = dict(batch_info)
    out['feat'] = tuple(f[index] for f in batch_info['feat'])
    for key in ('img_shape', 'homography_matrix', 'metainfo'):
        out[key] = [batch_info[key][i] for i in keep]
    return out


@MODELS.register_module()
class GatedSoftTeacher(SoftTeacher):
    """SoftTeacher with per-image gating of the unsupervised losses (see the module documentation).

    ``semi_train_cfg`` takes SoftTeacher's keys plus ``image_score_thr`` (float, optional): an unlabelled
    image contributes when a pseudo-box scores above it.
    """

    def train(self, mode: bool = True) -> 'GatedSoftTeacher':
        """Keep a frozen teacher in eval mode: SoftTeacher's pseudo-labelling does not switch it, so in a
        training run its BatchNorm layers would use (and update their statistics from) the unlabelled batch."""
        super().train(mode)
        if self.semi_train_cfg.get('freeze_teacher', True):
            self.teacher.eval()
        return self

    def image_score_thr(self) -> float:
        cfg = self.semi_train_cfg
        return float(cfg.get('image_score_thr', cfg.cls_pseudo_thr))

    def loss_by_pseudo_instances(self,
                                 batch_inputs: Tensor,
                                 batch_data_samples: SampleList,
                                 batch_info: Optional[dict] = None) -> dict:
        thr = self.image_score_thr()
        keep = [i for i, sample in enumerate(batch_data_samples)
                if bool((sample.gt_instances.scores > thr).any())]
        if 0 < len(keep) < len(batch_data_samples):
            index = torch.as_tensor(keep, device=batch_inputs.device)
            batch_inputs = batch_inputs[index]
            batch_data_samples = [batch_data_samples[i] for i in keep]
            batch_info = _subset_batch_info(batch_info, keep, index)
        losses = super().loss_by_pseudo_instances(batch_inputs, batch_data_samples, batch_info)
        if not keep:
            losses = reweight_loss_dict(losses, 0.)
        losses['unsup_num_images'] = batch_inputs.new_tensor(float(len(keep)))
        return losses
