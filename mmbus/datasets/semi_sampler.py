"""LabelledUnlabelledSampler: fixed labelled/unlabelled composition of every
batch, for mean-teacher training with mmpretrain/mmengine.

Every consecutive run of ``num_labelled + num_unlabelled`` indices the sampler
yields is one batch: ``num_labelled`` labelled samples then
``num_unlabelled`` unlabelled ones (paper: 64 + 64). Set the dataloader's
``batch_size`` to ``num_labelled + num_unlabelled`` (``sampler.batch_size``);
:class:`SemiClassifier` finds unlabelled samples by ``gt_label == -1``, so a
mismatch changes the composition, not the correctness of the loss.

Epoch length (``epoch_length``), in batches per rank:

* ``'labelled'`` (default): one pass over the labelled set,
  ``ceil(n_labelled / (num_labelled * world_size))`` batches; the unlabelled
  stream is cycled (re-shuffled each cycle) as needed;
* ``'unlabelled'``: one pass over the unlabelled set, labelled cycled;
* an int: that many batches (e.g. a fixed validation interval).

Each stream is a concatenation of seeded permutations (seed + epoch, cycle),
identical on every rank; rank ``r`` takes batch slots ``r, r + W, ...`` of it,
so ranks get disjoint shards within a cycle. ``set_epoch`` reshuffles.

``num_unlabelled=0`` gives a plain labelled sampler with the same epoch
semantics (used by the supervised baselines for comparable epochs).

Impossible data is refused with a message naming the dataset: no labelled
sample (when the sampler is built); before the first batch
(:meth:`LabelledUnlabelledSampler.check`, also called by
``TrainDataCheckHook``): labelled samples of fewer than
``min_classes`` classes; a labelled (or unlabelled) pool smaller than its
share of one step (``num_labelled * world_size``), which would repeat
samples inside every batch (``allow_repeats=True`` accepts that on purpose,
e.g. for a few-label demo). ``TrainDataCheckHook`` refuses a dataloader
``batch_size`` other than :attr:`LabelledUnlabelledSampler.batch_size`.

Resuming: the permutations depend only on ``seed`` and ``epoch``; mmengine
restores the epoch and calls :meth:`set_epoch`, ``RandomStateHook`` stores
and restores ``seed`` (:meth:`state_dict`), so a resumed run draws the same
batches as an uninterrupted one.
"""
import math
from typing import Iterator, List, Optional, Sized, Union

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmpretrain.registry import DATA_SAMPLERS
from torch.utils.data import Sampler


def sample_labels(dataset) -> List[int]:
    """``gt_label`` of every sample of a (Concat)Dataset (``-1`` =
    unlabelled), read from the annotations only (no image loading)."""
    if not hasattr(dataset, 'get_data_info'):
        raise TypeError(f'{type(dataset).__name__} has no get_data_info(); '
                        'cannot tell labelled from unlabelled samples')
    labels = []
    for i in range(len(dataset)):
        label = dataset.get_data_info(i).get('gt_label', -1)
        if hasattr(label, 'tolist'):
            label = label.tolist()
        if isinstance(label, (list, tuple)):
            label = label[0] if label else -1
        labels.append(int(label))
    return labels


def labelled_flags(dataset) -> List[bool]:
    """``gt_label >= 0`` for every sample of a (Concat)Dataset, read from the
    annotations only (no image loading)."""
    if hasattr(dataset, 'is_labelled'):
        return list(dataset.is_labelled())
    return [c >= 0 for c in sample_labels(dataset)]


def _describe(dataset) -> str:
    inner = getattr(dataset, 'datasets', None)
    if inner:
        return (f'{type(dataset).__name__}('
                f"{' + '.join(_describe(d) for d in inner)})")
    ann = getattr(dataset, 'ann_file', None)
    return f'{type(dataset).__name__}({ann})' if ann else \
        type(dataset).__name__


@DATA_SAMPLERS.register_module()
class LabelledUnlabelledSampler(Sampler):
    """Sampler yielding batches of ``num_labelled`` labelled followed by
    ``num_unlabelled`` unlabelled indices.

    Args:
        dataset: The (concatenated) dataset; ``gt_label == -1`` marks an
            unlabelled sample.
        num_labelled (int): Labelled samples per batch (per rank).
        num_unlabelled (int): Unlabelled samples per batch (per rank).
        epoch_length (str | int): ``'labelled'``, ``'unlabelled'`` or a
            number of batches per epoch (see module doc).
        shuffle (bool): Shuffle each stream (off: dataset order, cycled).
        seed (int, optional): Base seed; ``None`` draws one shared by all
            ranks.
        min_classes (int): Classes the labelled samples must cover (default
            2: a benign/malignant classifier cannot learn from one class).
        allow_repeats (bool): Accept a labelled/unlabelled pool smaller than
            its per-step share (samples then repeat within a batch).
    """

    def __init__(self,
                 dataset: Sized,
                 num_labelled: int = 64,
                 num_unlabelled: int = 64,
                 epoch_length: Union[str, int] = 'labelled',
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 min_classes: int = 2,
                 allow_repeats: bool = False) -> None:
        if num_labelled < 1 or num_unlabelled < 0:
            raise ValueError('need num_labelled >= 1 and num_unlabelled >= 0,'
                             f' got {num_labelled}, {num_unlabelled}')
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.num_labelled = num_labelled
        self.num_unlabelled = num_unlabelled
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        labels = sample_labels(dataset)
        self.labelled = [i for i, c in enumerate(labels) if c >= 0]
        self.unlabelled = [i for i, c in enumerate(labels) if c < 0]
        name = _describe(dataset)
        if not self.labelled:
            raise ValueError(f'{name} has no labelled sample (gt_label >= 0)')
        if num_unlabelled > 0 and not self.unlabelled:
            raise ValueError(
                f'{name} has no unlabelled sample (gt_label == -1) but '
                f'num_unlabelled={num_unlabelled}; add the extended set or '
                'set num_unlabelled=0')
        # Impossible data is reported by check() (called before the first
        # batch and by TrainDataCheckHook), not here: mmengine also builds
        # the train loop when a config is only tested (EarlyStoppingHook).
        self._problems = []
        classes = sorted({labels[i] for i in self.labelled})
        if len(classes) < min_classes:
            self._problems.append(
                f'{name}: all {len(self.labelled)} labelled samples have '
                f'gt_label {classes[0]}; the classifier needs labelled '
                f'samples of at least {min_classes} classes (check the '
                'annotation file and the split)')
        for pool, per, what in ((self.labelled, num_labelled, 'labelled'),
                                (self.unlabelled, num_unlabelled,
                                 'unlabelled')):
            need = per * world_size
            if per > 0 and len(pool) < need and not allow_repeats:
                ranks = f' x {world_size} ranks' if world_size > 1 else ''
                self._problems.append(
                    f'{name} has {len(pool)} {what} samples but every '
                    f'batch takes num_{what}={per}{ranks}: samples '
                    f'would repeat inside each batch. Lower num_{what} '
                    f'(and batch_size), add {what} data, or set '
                    'allow_repeats=True in the sampler to accept repeats')
        self.allow_repeats = allow_repeats
        self.min_classes = min_classes
        if isinstance(epoch_length, str):
            if epoch_length == 'labelled':
                n, per = len(self.labelled), num_labelled
            elif epoch_length == 'unlabelled':
                if num_unlabelled == 0:
                    raise ValueError("epoch_length='unlabelled' needs "
                                     'num_unlabelled > 0')
                n, per = len(self.unlabelled), num_unlabelled
            else:
                raise ValueError("epoch_length must be 'labelled', "
                                 f"'unlabelled' or an int, got "
                                 f'{epoch_length!r}')
            self.num_batches = max(1, math.ceil(n / (per * world_size)))
        else:
            if int(epoch_length) < 1:
                raise ValueError(f'epoch_length must be >= 1, got '
                                 f'{epoch_length}')
            self.num_batches = int(epoch_length)
        self.epoch_length = epoch_length

    @property
    def batch_size(self) -> int:
        """The dataloader batch size this sampler is built for."""
        return self.num_labelled + self.num_unlabelled

    def _stream(self, pool: List[int], per_batch: int,
                salt: int) -> torch.Tensor:
        """(num_batches, per_batch) indices of this rank."""
        total = self.num_batches * self.world_size * per_batch
        if per_batch == 0:
            return torch.zeros((self.num_batches, 0), dtype=torch.long)
        pool_t = torch.tensor(pool, dtype=torch.long)
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch * 1000003 + salt)
        chunks, n = [], 0
        while n < total:
            chunks.append(pool_t[torch.randperm(len(pool), generator=g)]
                          if self.shuffle else pool_t)
            n += len(pool)
        stream = torch.cat(chunks)[:total]
        stream = stream.view(self.num_batches, self.world_size, per_batch)
        return stream[:, self.rank]

    def check(self) -> None:
        """Raise ``ValueError`` (naming the dataset) for data this sampler
        cannot compose batches from: labelled samples of fewer than
        ``min_classes`` classes, or a pool smaller than its per-step share
        without ``allow_repeats``."""
        if self._problems:
            raise ValueError('; '.join(self._problems))

    def __iter__(self) -> Iterator[int]:
        self.check()
        lab = self._stream(self.labelled, self.num_labelled, 0)
        unl = self._stream(self.unlabelled, self.num_unlabelled, 1)
        return iter(torch.cat([lab, unl], dim=1).reshape(-1).tolist())

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (called by DistSamplerSeedHook)."""
        self.epoch = epoch

    def state_dict(self) -> dict:
        """What the permutations depend on (``seed``, ``epoch``)."""
        return dict(seed=int(self.seed), epoch=int(self.epoch))

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state['seed'])
        self.epoch = int(state.get('epoch', self.epoch))
