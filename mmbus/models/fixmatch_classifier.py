"""FixMatchClassifier: FixMatch (Sohn et al. 2020) through the mean teacher's machinery.

Same model layout as :class:`SemiClassifier` (student + EMA teacher in one module, the teacher written by
``MeanTeacherHook``, labelled / unlabelled batches from ``LabelledUnlabelledSampler``, predictions from the
teacher by default). Loss on a mixed batch (``gt_label == -1`` = unlabelled)::

    sup_loss_cls       = CE(student(weak), y)                       over the labelled samples
    unsup_loss_fixmatch = w * sum_u mask_u * CE(student(strong_u), q_u) / n_u
    q_u = argmax p_u,  mask_u = [max p_u >= threshold],  p_u = softmax(pseudo-labeller(weak_u))

``weak`` is ``view_augment`` (flip, small shifts, noise), ``strong`` is ``strong_augment`` of the same crop
(:class:`StrongViewAugment`). The pseudo-labeller is the student's own weak-view prediction, detached, as in
FixMatch (``pseudo_label_from='student'``), or the EMA teacher (``'teacher'``). Dividing by all ``n_u``
unlabelled samples, confident or not, is FixMatch's normalisation: the term grows as the model becomes
confident. With no confident sample the term is an exact, graph-connected zero (DDP-safe). ``w`` is
``consistency_weight`` (FixMatch's lambda_u) with the ramp-up of :class:`SemiClassifier`.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .semi_classifier import SemiClassifier


def pseudo_labels(probs: torch.Tensor, threshold: float):
    """``(labels, mask)`` of FixMatch: the arg-max class and whether its probability reaches
    ``threshold``."""
    conf, labels = probs.max(dim=1)
    return labels, conf >= threshold


@MODELS.register_module()
class FixMatchClassifier(SemiClassifier):
    """FixMatch with an EMA teacher for prediction.

    Args:
        threshold (float): Confidence a weak-view prediction needs to become a pseudo-label (FixMatch: 0.95).
        strong_augment (dict): The strong view (default :class:`StrongViewAugment`).
        pseudo_label_from (str): ``'student'`` (FixMatch) or ``'teacher'`` (the EMA teacher labels).
        consistency_weight (float): lambda_u (FixMatch: 1).
        **kwargs: :class:`SemiClassifier` arguments (backbone, head, view_augment = the weak view, ...);
            ``consistency`` does not apply.
    """

    def __init__(self, *args, threshold: float = 0.95, strong_augment: Optional[dict] = None,
                 pseudo_label_from: str = 'student', consistency_weight: float = 1.0, **kwargs):
        super().__init__(*args, consistency_weight=consistency_weight, **kwargs)
        if not 0 <= threshold <= 1:
            raise ValueError(f'threshold must be in [0, 1], got {threshold}')
        if pseudo_label_from not in ('student', 'teacher'):
            raise ValueError(f"pseudo_label_from must be 'student' or 'teacher', got {pseudo_label_from!r}")
        self.threshold = float(threshold)
        self.pseudo_label_from = pseudo_label_from
        self.strong_augment = MODELS.build(strong_augment or dict(type='StrongViewAugment'))

    @property
    def teacher_updates_buffers(self) -> bool:
        # student pseudo-labels (FixMatch proper): the teacher never runs in training, so its batch-norm
        # statistics must come from the student (MeanTeacherHook buffer_policy 'average' or 'copy')
        return self.pseudo_label_from == 'teacher' and bool(self.teacher_train_mode)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        if data_samples is None or len(data_samples) != inputs.size(0):
            raise ValueError('FixMatchClassifier.loss needs one data sample with gt_label per input')
        labels = torch.cat([ds.gt_label.view(-1)[:1] for ds in data_samples]).to(inputs.device)
        labelled = labels >= 0
        lab_w = labelled.to(inputs.dtype)
        if self.consistency_on == 'unlabelled':
            keep = torch.nonzero(~labelled).squeeze(1)
        else:
            keep = torch.arange(labels.numel(), device=inputs.device)
        weak = self.view_augment(inputs) if self.view_augment is not None else inputs
        strong = self.strong_augment(inputs[keep])
        # one student pass over weak + strong, so batch-norm statistics see both
        logits = self.student(torch.cat([weak, strong]), mode='tensor')
        w_logits, s_logits = logits[:inputs.size(0)], logits[inputs.size(0):]
        n_lab = lab_w.sum().clamp(min=1.0)
        target = labels.clamp(min=0)
        loss_module = getattr(self.student.head, 'loss_module', None)
        if loss_module is not None:
            sup = loss_module(w_logits, target, weight=lab_w, avg_factor=n_lab)
        else:
            sup = (F.cross_entropy(w_logits, target, reduction='none') * lab_w).sum() / n_lab
        zero = logits.sum() * 0.0  # every output in the graph (DDP-safe)
        if keep.numel() == 0:
            unsup, ratio = zero, logits.new_zeros(())
        else:
            with torch.no_grad():
                source = (w_logits[keep].detach() if self.pseudo_label_from == 'student'
                          else self._teacher_logits(weak[keep]))
                q, mask = pseudo_labels(F.softmax(source, dim=1), self.threshold)
            per_sample = F.cross_entropy(s_logits, q, reduction='none')
            unsup = (per_sample * mask.to(per_sample.dtype)).sum() / keep.numel() + zero
            ratio = mask.float().mean()
        w = self.consistency_weight_at()
        return dict(sup_loss_cls=sup, unsup_loss_fixmatch=unsup * w,
                    unsup_weight=torch.tensor(w, device=inputs.device), unsup_mask_ratio=ratio,
                    sup_num_labelled=lab_w.sum().detach())


__all__ = ['FixMatchClassifier', 'pseudo_labels']
