"""LabelledUnlabelledDetSampler: finite epochs of fixed labelled/unlabelled batches for mmdet's
semi-supervised detectors (``SoftTeacher``, ``SemiBaseDetector``).

mmdet's ``MultiSourceSampler`` / ``GroupMultiSourceSampler`` are infinite (an epoch never ends, so only
iteration-based loops work) and the group variant loops forever when one source has no image of an
aspect-ratio group (ultrasound images are mostly landscape). This sampler is
:class:`~mmbus.datasets.semi_sampler.LabelledUnlabelledSampler` (same streams, epoch lengths, rank shards,
``set_epoch`` and seed/epoch determinism) applied to the semi-supervised ``ConcatDataset`` of mmdet's
configs: the first sub-dataset is labelled, the second unlabelled, as ``source_ratio`` treats them. There
is no aspect-ratio grouping; every batch holds ``num_labelled`` labelled then ``num_unlabelled``
unlabelled images, so the ``sup`` and ``unsup_*`` branches are never empty. Set the dataloader's
``batch_size`` to ``num_labelled + num_unlabelled`` and ``batch_sampler=None``.

An epoch is one pass over the labelled set by default (``epoch_length='labelled'``), so
``EpochBasedTrainLoop``, per-epoch validation, ``EarlyStoppingHook`` and resuming work as for any
finite sampler.
"""
from typing import Optional, Sized, Union

from mmdet.registry import DATA_SAMPLERS

from .semi_sampler import LabelledUnlabelledSampler


class _SourceLabels:
    """``gt_label`` 0 for the images of the first sub-dataset, -1 for the second's: what
    :class:`LabelledUnlabelledSampler` reads to split its two pools (no image or annotation is read)."""

    def __init__(self, num_labelled: int, num_unlabelled: int) -> None:
        self.n_lab, self.n_all = num_labelled, num_labelled + num_unlabelled

    def __len__(self) -> int:
        return self.n_all

    def get_data_info(self, idx: int) -> dict:
        return dict(gt_label=0 if idx < self.n_lab else -1)


def _name(dataset) -> str:
    ann = getattr(dataset, 'ann_file', None)
    return f'{type(dataset).__name__}({ann})' if ann else type(dataset).__name__


@DATA_SAMPLERS.register_module()
class LabelledUnlabelledDetSampler(LabelledUnlabelledSampler):
    """Batches of ``num_labelled`` images of ``dataset.datasets[0]`` then ``num_unlabelled`` of
    ``dataset.datasets[1]``, finite epochs.

    Args:
        dataset (ConcatDataset): ``[labelled, unlabelled]`` sub-datasets.
        num_labelled (int): Labelled images per batch (per rank).
        num_unlabelled (int): Unlabelled images per batch (per rank).
        epoch_length (str | int): ``'labelled'`` (one pass over the labelled set), ``'unlabelled'`` or a
            number of batches per epoch.
        shuffle (bool): Shuffle each stream (off: dataset order, cycled).
        seed (int, optional): Base seed; ``None`` draws one shared by all ranks.
        allow_repeats (bool): Accept a source smaller than its share of one step
            (``num_* x world_size``), whose images then repeat within a batch.
    """

    def __init__(self,
                 dataset: Sized,
                 num_labelled: int = 1,
                 num_unlabelled: int = 4,
                 epoch_length: Union[str, int] = 'labelled',
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 allow_repeats: bool = False) -> None:
        subsets = getattr(dataset, 'datasets', None)
        if subsets is None or len(subsets) != 2:
            raise ValueError(
                f'{type(dataset).__name__}: {type(self).__name__} needs a ConcatDataset of two datasets, '
                '[labelled, unlabelled] (as mmdet semi-supervised configs build), got '
                f'{"no sub-datasets" if subsets is None else f"{len(subsets)} sub-datasets"}')
        sizes = [len(d) for d in subsets]
        for ds, n, per, what in ((subsets[0], sizes[0], num_labelled, 'labelled (first)'),
                                 (subsets[1], sizes[1], num_unlabelled, 'unlabelled (second)')):
            if n == 0 and per > 0:
                raise ValueError(
                    f'the {what} dataset of the ConcatDataset, {_name(ds)}, has no image (after '
                    f'filter_cfg={getattr(ds, "filter_cfg", None)}) but every batch takes {per} of its '
                    'images; check its ann_file and data_root')
        super().__init__(_SourceLabels(*sizes), num_labelled=num_labelled, num_unlabelled=num_unlabelled,
                         epoch_length=epoch_length, shuffle=shuffle, seed=seed, min_classes=1,
                         allow_repeats=True)
        self.dataset = dataset
        self.allow_repeats = allow_repeats
        for ds, n, per, what in ((subsets[0], sizes[0], num_labelled, 'labelled'),
                                 (subsets[1], sizes[1], num_unlabelled, 'unlabelled')):
            need = per * self.world_size
            if per > 0 and n < need and not allow_repeats:
                ranks = f' x {self.world_size} ranks' if self.world_size > 1 else ''
                raise ValueError(
                    f'the {what} dataset {_name(ds)} has {n} images but every batch takes '
                    f'num_{what}={per}{ranks} = {need}: images would repeat inside each batch. Lower '
                    f'num_{what} (and batch_size), add {what} images, or set allow_repeats=True')
