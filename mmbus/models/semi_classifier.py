"""SemiClassifier: mean-teacher semi-supervised image classification for
mmpretrain.

Student and teacher are two :class:`mmpretrain.models.ImageClassifier`
submodules of this one model, so a DDP wrapper wraps one module and
checkpoints hold both. The teacher never receives gradients
(``requires_grad=False``, forward under ``torch.no_grad``); its weights are an
exponential moving average of the student's, written by
:class:`mmbus.engine.hooks.MeanTeacherHook` after every optimiser step.

Training batch: labelled and unlabelled samples mixed, ``gt_label == -1``
marks an unlabelled sample (see :class:`LabelledUnlabelledSampler`).

Loss (keys prefixed ``sup_``/``unsup_``, every summed key contains ``loss``)::

    sup_loss_cls            = CE(student(view_s), y) averaged over labelled
    unsup_loss_consistency  = w(t) * D(softmax(student(view_s)),
                                       softmax(teacher(view_t)))
                              averaged over unlabelled (or all) samples

``view_s`` and ``view_t`` are independent draws of ``view_augment`` (flip,
brightness, Gaussian noise). ``D`` is the per-sample mean squared error over
classes (original mean teacher) or KL(teacher || student). ``w(t) = w_max *
exp(-5 (1 - t/T)^2)`` for ``t < T = rampup_iters``, ``w_max`` afterwards. A
term without samples in the batch is multiplied by zero rather than skipped,
so every parameter always takes part in the graph (DDP-safe).

The iteration ``t`` is pushed by the hook with :meth:`set_iter` from
``runner.iter`` before each step, so it is correct after ``--resume``; the
views and dropout draw from torch's global generator, whose state
``RandomStateHook`` keeps in the checkpoints.
"""
import math
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import mmbus.compat  # noqa: F401,I100  (before mmpretrain.models: see switch_off_unusable_multimodal)
from mmpretrain.models.classifiers import BaseClassifier, ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

_CLASSIFIER_PREFIXES = ('backbone.', 'neck.', 'head.')


@MODELS.register_module()
class SemiClassifier(BaseClassifier):
    """Mean-teacher classifier (student + EMA teacher).

    Args:
        backbone, neck, head (dict): As for ``ImageClassifier``; student and
            teacher are built from the same configs.
        view_augment (dict, optional): Stochastic view augmentation applied
            independently to the student and teacher inputs during training
            (default :class:`BatchViewAugment`). ``None`` disables it.
        consistency (str): ``'mse'`` (mean over classes of the squared
            difference of softmax outputs, original) or ``'kl'``
            (KL(teacher || student)).
        consistency_weight (float): ``w_max``, the weight after ramp-up.
        rampup_iters (int): ``T`` of the sigmoid ramp-up, in iterations.
            0 disables the ramp-up.
        consistency_on (str): ``'unlabelled'`` (default) or ``'all'``; the
            teacher only runs on these samples.
        teacher_train_mode (bool): Run the teacher in train mode during
            training (dropout and batch-norm batch statistics, as the original
            implementation does). ``False`` runs it in eval mode.
        predict_with (str): ``'teacher'`` (default) or ``'student'``; which
            network :meth:`predict` uses by default.
        predict_student_too (bool): During prediction also store the other
            network's softmax scores as ``data_sample.student_pred_score``
            (or ``teacher_pred_score`` when predicting with the student),
            so one validation pass can report both (see
            ``BinaryDiagnosticMetric(score_key=...)``).
        data_preprocessor (dict, optional): Defaults to
            ``ClsDataPreprocessor``; must not carry batch augments that
            change labels (unlabelled samples have ``gt_label == -1``).
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 neck: Optional[dict] = None,
                 view_augment: Optional[dict] = dict(type='BatchViewAugment'),
                 consistency: str = 'mse',
                 consistency_weight: float = 100.0,
                 rampup_iters: int = 0,
                 consistency_on: str = 'unlabelled',
                 teacher_train_mode: bool = True,
                 predict_with: str = 'teacher',
                 predict_student_too: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if consistency not in ('mse', 'kl'):
            raise ValueError(f"consistency must be 'mse' or 'kl', got "
                             f'{consistency!r}')
        if consistency_on not in ('unlabelled', 'all'):
            raise ValueError("consistency_on must be 'unlabelled' or 'all', "
                             f'got {consistency_on!r}')
        if predict_with not in ('teacher', 'student'):
            raise ValueError("predict_with must be 'teacher' or 'student', "
                             f'got {predict_with!r}')
        if consistency_weight < 0 or rampup_iters < 0:
            raise ValueError('consistency_weight and rampup_iters must be '
                             '>= 0')
        num_classes = head.get('num_classes') if isinstance(head, dict) \
            else getattr(head, 'num_classes', None)
        if isinstance(num_classes, int) and num_classes < 2:
            raise ValueError(
                f'head.num_classes={num_classes}: a mean-teacher classifier '
                'needs at least 2 classes (the consistency term compares '
                'class distributions)')
        if not isinstance(data_preprocessor, nn.Module):
            data_preprocessor = dict(data_preprocessor or {})
            data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
            # built from mmpretrain's registry (mmengine's lacks it)
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(init_cfg=init_cfg,
                         data_preprocessor=data_preprocessor)

        def build():
            # The inner preprocessors are unused: this model's preprocessor
            # has already normalised the batch.
            return ImageClassifier(
                backbone=backbone, neck=neck, head=head,
                data_preprocessor=dict(type='ClsDataPreprocessor'))

        self.student = build()
        self.teacher = build()
        self.teacher.load_state_dict(self.student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.view_augment = (MODELS.build(view_augment)
                             if isinstance(view_augment, dict) else
                             view_augment)
        self.consistency = consistency
        self.consistency_weight = float(consistency_weight)
        self.rampup_iters = int(rampup_iters)
        self.consistency_on = consistency_on
        self.teacher_train_mode = teacher_train_mode
        self.predict_with = predict_with
        self.predict_student_too = predict_student_too
        self._iter = 0
        self._register_load_state_dict_pre_hook(self._load_plain_classifier)

    @property
    def teacher_updates_buffers(self) -> bool:
        """Whether training forwards the teacher in train mode, so that its batch-norm statistics follow
        the data (what MeanTeacherHook's ``buffer_policy='skip'`` relies on)."""
        return bool(self.teacher_train_mode)

    # ------------------------------------------------------------ schedule
    def set_iter(self, iteration: int) -> None:
        """Set the training iteration ``t`` (0-based) used by the ramp-up.
        Host-side int: no device sync."""
        self._iter = int(iteration)

    def consistency_weight_at(self, iteration: Optional[int] = None) -> float:
        """``w(t) = w_max * exp(-5 * (1 - t/T)^2)`` for ``t < T``, else
        ``w_max``."""
        t = self._iter if iteration is None else iteration
        if self.rampup_iters <= 0 or t >= self.rampup_iters:
            return self.consistency_weight
        phase = 1.0 - max(t, 0) / self.rampup_iters
        return self.consistency_weight * math.exp(-5.0 * phase * phase)

    # ------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self._net(self.predict_with)(inputs, mode='tensor')
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def _net(self, which: str) -> ImageClassifier:
        if which not in ('teacher', 'student'):
            raise ValueError(f"expected 'teacher' or 'student', got {which!r}")
        return self.teacher if which == 'teacher' else self.student

    def extract_feat(self, inputs: torch.Tensor, stage: str = 'neck'):
        return self._net(self.predict_with).extract_feat(inputs, stage)

    def _views(self, inputs):
        if self.view_augment is None:
            return inputs, inputs
        return self.view_augment(inputs), self.view_augment(inputs)

    def _teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        was_training = self.teacher.training
        if not self.teacher_train_mode:
            self.teacher.eval()
        try:
            with torch.no_grad():
                return self.teacher(inputs, mode='tensor').detach()
        finally:
            self.teacher.train(was_training)

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> dict:
        """Mean-teacher loss on a mixed batch (``gt_label == -1`` =
        unlabelled)."""
        if data_samples is None or len(data_samples) != inputs.size(0):
            raise ValueError('SemiClassifier.loss needs one data sample with '
                             'gt_label per input')
        labels = torch.cat([ds.gt_label.view(-1)[:1] for ds in data_samples
                            ]).to(inputs.device)
        labelled = labels >= 0
        lab_w = labelled.to(inputs.dtype)

        student_in, teacher_in = self._views(inputs)
        s_logits = self.student(student_in, mode='tensor')

        # Supervised term over the labelled samples; a batch without labels
        # gives 0 * (sum of CE) so the graph still covers all parameters.
        n_lab = lab_w.sum().clamp(min=1.0)
        target = labels.clamp(min=0)
        loss_module = getattr(self.student.head, 'loss_module', None)
        if loss_module is not None:
            sup = loss_module(s_logits, target, weight=lab_w,
                              avg_factor=n_lab)
        else:
            sup = (F.cross_entropy(s_logits, target, reduction='none') *
                   lab_w).sum() / n_lab

        # Consistency term: gradient flows through the student only. The
        # teacher only runs on the samples the term uses (the unlabelled
        # half by default), which saves half of its forward cost.
        if self.consistency_on == 'unlabelled':
            keep = torch.nonzero(~labelled).squeeze(1)
        else:
            keep = torch.arange(labels.numel(), device=inputs.device)
        w = self.consistency_weight_at()
        if keep.numel() == 0:
            cons = s_logits.sum() * 0.0  # keeps the graph DDP-safe
            agree = s_logits.new_zeros(())
        else:
            t_logits = self._teacher_logits(teacher_in[keep])
            s_kept = s_logits[keep]
            log_p_s = F.log_softmax(s_kept, dim=1)
            p_t = F.softmax(t_logits, dim=1)
            if self.consistency == 'mse':
                per_sample = ((log_p_s.exp() - p_t)**2).mean(dim=1)
            else:
                per_sample = (p_t * (torch.log(p_t.clamp(min=1e-12)) -
                                     log_p_s)).sum(dim=1)
            # zero-weight the term in the graph rather than dropping it
            cons = per_sample.mean() + s_logits.sum() * 0.0
            with torch.no_grad():
                agree = (s_kept.argmax(1) == t_logits.argmax(1)).float(
                ).mean()
        return dict(
            sup_loss_cls=sup,
            unsup_loss_consistency=cons * w,
            unsup_weight=torch.tensor(w, device=inputs.device),
            unsup_agreement=agree,
            sup_num_labelled=lab_w.sum().detach())

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: Optional[str] = None) -> List[DataSample]:
        """Predict with the teacher (default) or ``mode='student'``.

        With ``predict_student_too`` the other network's softmax scores are
        stored on each sample as ``student_pred_score`` /
        ``teacher_pred_score``.
        """
        which = mode or self.predict_with
        results = self._net(which).predict(inputs, data_samples)
        if self.predict_student_too:
            other = 'student' if which == 'teacher' else 'teacher'
            scores = F.softmax(self._net(other)(inputs, mode='tensor'), dim=1)
            for ds, score in zip(results, scores):
                ds.set_field(score, f'{other}_pred_score', dtype=torch.Tensor)
        return results

    # --------------------------------------------------------- checkpoints
    def _load_plain_classifier(self, state_dict, prefix, local_metadata,
                               strict, missing_keys, unexpected_keys,
                               error_msgs):
        """Let a plain ``ImageClassifier`` state dict (``backbone.*``,
        ``neck.*``, ``head.*``) initialise both student and teacher."""
        own = (prefix + 'student.', prefix + 'teacher.')
        if any(k.startswith(own) for k in state_dict):
            return
        plain = [
            k for k in state_dict
            if k.startswith(tuple(prefix + p for p in _CLASSIFIER_PREFIXES))
        ]
        for k in plain:
            value = state_dict.pop(k)
            rest = k[len(prefix):]
            state_dict[prefix + 'student.' + rest] = value
            state_dict[prefix + 'teacher.' + rest] = value


__all__ = ['SemiClassifier']
