"""LabelledUnlabelledDetDataset: the training data of a semi-supervised detector (SoftTeacher) put together
from its supervised detector's own training dataset.

mmdet's semi-supervised configs spell out a ``ConcatDataset`` of a labelled dataset whose pipeline ends in
``MultiBranch(sup=...)`` and an unlabelled one whose pipeline ends in ``MultiBranch(unsup_teacher=...,
unsup_student=...)``. In mmdet those pipelines are fixed per dataset; here each SoftTeacher config pairs the
semi-supervised parts with a different supervised detector (input size, augmentation, data root), and an
mmengine base is evaluated apart from the config that inherits it, so a shared base cannot read the
detector's pipeline. This dataset does that one assembly at build time, from the pieces the configs declare:

* labelled images go through the detector's training pipeline unchanged, its last step (the packing) moved
  into branch ``sup``: the student's supervised loss sees exactly what the supervised detector saw;
* unlabelled images are loaded as the detector loads them (its first step), carry no boxes
  (``LoadEmptyAnnotations``), then pass through the declared ``views`` (branches ``unsup_teacher`` and
  ``unsup_student``); a ``Resize`` / ``RandomResize`` of a view without ``scale`` takes ``img_scale``, the
  detector's input size;
* the unlabelled split is the labelled dataset's config (less its ``indices``) with the ``unlabelled`` keys on
  top (its ``ann_file``, ``filter_cfg``), so both follow one ``data_root``.

The result is an mmengine ``ConcatDataset`` ``[labelled, unlabelled]``, which
:class:`~mmbus.datasets.semi_det_sampler.LabelledUnlabelledDetSampler` batches.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dataset import ConcatDataset
from mmdet.registry import DATASETS

BRANCHES = ('sup', 'unsup_teacher', 'unsup_student')
PACKERS = ('PackDetInputs', 'mmdet.PackDetInputs')
RESIZES = ('Resize', 'RandomResize', 'mmdet.Resize', 'mmdet.RandomResize')


def _sized(view: Sequence[dict], img_scale: Optional[Tuple[int, int]]) -> List[dict]:
    """The view's transforms, a resize without ``scale`` given ``img_scale``."""
    out = []
    for t in view:
        t = dict(t)
        if t.get('type') in RESIZES and t.get('scale') is None and t.get('scale_factor') is None:
            if img_scale is None:
                raise ValueError(f'LabelledUnlabelledDetDataset: the view step {t} has no scale and no '
                                 'img_scale was given (the detector\'s input size, e.g. img_scale=_base_.img_scale)')
            t['scale'] = tuple(img_scale)
        out.append(t)
    return out


def unlabelled_split(labelled: dict, unlabelled: dict) -> dict:
    """The unlabelled dataset's config (pipeline as the labelled one's, to be replaced): the labelled config
    with the ``unlabelled`` keys on top, less its ``indices`` (a subset of the labelled images says nothing
    about which unlabelled ones to use)."""
    out = {k: v for k, v in copy.deepcopy(dict(labelled)).items() if k != 'indices'}
    out.update(copy.deepcopy(dict(unlabelled or {})))
    return out


def semi_det_datasets(labelled: dict,
                      unlabelled: dict,
                      views: Dict[str, Sequence[dict]],
                      img_scale: Optional[Tuple[int, int]] = None,
                      branch_field: Sequence[str] = BRANCHES) -> List[dict]:
    """``[labelled, unlabelled]`` dataset configs with their multi-branch pipelines (see the module)."""
    pipeline = list(labelled.get('pipeline') or [])
    if len(pipeline) < 2 or pipeline[-1].get('type') not in PACKERS:
        last = pipeline[-1].get('type') if pipeline else None
        raise ValueError('LabelledUnlabelledDetDataset: the labelled dataset\'s pipeline (the supervised '
                         f'detector\'s training pipeline) must load the images first and end with '
                         f'PackDetInputs; it ends with {last!r}')
    missing = [b for b in views if b not in branch_field]
    if missing or not views:
        raise ValueError(f'LabelledUnlabelledDetDataset: views {sorted(views)} must be branches of '
                         f'branch_field {list(branch_field)}')
    lab = copy.deepcopy(dict(labelled))
    lab['pipeline'] = pipeline[:-1] + [dict(type='MultiBranch', branch_field=list(branch_field), sup=pipeline[-1])]
    unl = unlabelled_split(labelled, unlabelled)
    unl['pipeline'] = [pipeline[0], dict(type='LoadEmptyAnnotations'),
                       dict(type='MultiBranch', branch_field=list(branch_field),
                            **{name: _sized(view, img_scale) for name, view in views.items()})]
    return [lab, unl]


@DATASETS.register_module()
class LabelledUnlabelledDetDataset(ConcatDataset):
    """``[labelled, unlabelled]`` training data of a semi-supervised detector (see the module).

    Args:
        labelled (dict): The supervised detector's training dataset config (``train_dataloader.dataset``);
            its pipeline loads the image first and ends with ``PackDetInputs``.
        unlabelled (dict): Keys replacing the labelled config's for the unlabelled split (``ann_file``,
            ``filter_cfg``, ...).
        views (dict): ``{branch: transforms}`` for the unlabelled images after loading, e.g. the teacher's
            weak and the student's strong view.
        img_scale (tuple, optional): The detector's input size, given to the views' resizes without a scale.
        branch_field (sequence of str): ``MultiBranch``'s branches (the labelled images fill ``sup``).
        lazy_init (bool), ignore_keys (str | list, optional): As mmengine's ``ConcatDataset``.
    """

    def __init__(self,
                 labelled: dict,
                 unlabelled: dict,
                 views: Dict[str, Sequence[dict]],
                 img_scale: Optional[Tuple[int, int]] = None,
                 branch_field: Sequence[str] = BRANCHES,
                 lazy_init: bool = False,
                 ignore_keys: Union[str, List[str], None] = None) -> None:
        super().__init__(semi_det_datasets(labelled, unlabelled, views, img_scale, branch_field),
                         lazy_init=lazy_init, ignore_keys=ignore_keys)
