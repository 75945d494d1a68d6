"""TrainDataCheckHook: refuse training data that cannot train what the config says, before the first
iteration.

Without it these train silently: a labelled training set with one class only (the classifier learns a
constant, validation AUC 0.5, a "best" checkpoint is still saved), labels the model's head has no output
for, a validation set with one class (AUC undefined, so the "best" checkpoint is picked by chance) and a
``batch_size`` that differs from ``num_labelled + num_unlabelled`` of :class:`LabelledUnlabelledSampler`
(the data loader cuts the sampler's labelled-then-unlabelled runs at the wrong places, so batches become
all-labelled or all-unlabelled). The sampler itself refuses a labelled (or unlabelled) pool smaller than its
per-batch share.

Only datasets whose samples carry ``gt_label`` (classification) are checked for labels; the labels are read
from the annotations (``get_data_info``), no image is loaded.
"""
from collections import Counter
from typing import List, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def dataset_labels(dataset) -> Optional[List[int]]:
    """``gt_label`` of every sample (``-1`` = unlabelled), or ``None`` when the samples have no label."""
    if not hasattr(dataset, 'get_data_info') or not hasattr(dataset, '__len__') or len(dataset) == 0:
        return None
    first = dataset.get_data_info(0)
    if not isinstance(first, dict) or 'gt_label' not in first:
        return None
    from mmbus.datasets.semi_sampler import sample_labels
    return sample_labels(dataset)


def describe_dataset(dataset) -> str:
    """``BUSCropDataset(basic_train.json)`` / ``ConcatDataset(a.json + b.json)`` for messages."""
    inner = getattr(dataset, 'datasets', None)
    if inner:
        return f"{type(dataset).__name__}({' + '.join(describe_dataset(d) for d in inner)})"
    ann = getattr(dataset, 'ann_file', None)
    return f'{type(dataset).__name__}({ann})' if ann else type(dataset).__name__


def class_names(dataset, labels) -> List[str]:
    classes = list((getattr(dataset, 'metainfo', None) or {}).get('classes', []) or [])
    return [classes[c] if 0 <= c < len(classes) else str(c) for c in labels]


@HOOKS.register_module()
class TrainDataCheckHook(Hook):
    """Check the training and validation data against the config before training starts.

    Args:
        min_classes (int): Classes the labelled training set and the validation set must hold.
        check_val (bool): Also check the validation set (when its metrics include an AUC).
    """
    priority = 'VERY_HIGH'

    def __init__(self, min_classes: int = 2, check_val: bool = True) -> None:
        self.min_classes = int(min_classes)
        self.check_val = check_val

    def before_train(self, runner) -> None:
        loader = runner.train_loop.dataloader
        check = getattr(getattr(loader, 'sampler', None), 'check', None)
        if callable(check):  # LabelledUnlabelledSampler: one class, too few samples
            check()
        self.check_batch_composition(loader)
        dataset = loader.dataset
        labels = dataset_labels(dataset)
        if labels is not None:
            self.check_labels(runner, dataset, labels, 'training')
        if self.check_val and getattr(runner, '_val_loop', None) is not None and \
                not isinstance(runner._val_loop, dict):
            self.check_val_set(runner)

    @staticmethod
    def check_batch_composition(loader) -> None:
        sampler = getattr(loader, 'sampler', None)
        want = getattr(sampler, 'batch_size', None)
        have = getattr(loader, 'batch_size', None)
        if want is None or have is None or int(want) == int(have):
            return
        nl, nu = getattr(sampler, 'num_labelled', '?'), getattr(sampler, 'num_unlabelled', '?')
        raise ValueError(
            f'train_dataloader.batch_size={have} but {type(sampler).__name__} composes batches of '
            f'num_labelled + num_unlabelled = {nl} + {nu} = {want}: the batches would not hold {nl} labelled and '
            f'{nu} unlabelled samples. Set train_dataloader.batch_size={want} (or change num_labelled / '
            'num_unlabelled)')

    def _num_classes(self, runner) -> Optional[int]:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for head in (getattr(model, 'head', None), getattr(getattr(model, 'student', None), 'head', None)):
            n = getattr(head, 'num_classes', None)
            if isinstance(n, int) and n > 0:
                return n
        return None

    def check_labels(self, runner, dataset, labels, what: str) -> None:
        name = describe_dataset(dataset)
        labelled = [c for c in labels if c >= 0]
        n_cls = self._num_classes(runner)
        if n_cls is not None:
            bad = sorted({c for c in labelled if c >= n_cls})
            if bad:
                raise ValueError(f'{what} set {name} has labels {bad} but the model head has {n_cls} classes '
                                 f'(labels 0..{n_cls - 1})')
        only = self._single_class(labelled)
        if only is not None:
            only, n = only
            raise ValueError(
                f'{what} set {name}: all {n} labelled samples are of class {class_names(dataset, [only])[0]!r}; '
                f'a classifier needs at least {self.min_classes} classes to learn anything (it would output a '
                'constant, validation AUC 0.5). Check the annotation file and the split')

    def _single_class(self, labelled: List[int]):
        """``(class, count)`` when the labelled samples cover fewer than ``min_classes`` classes."""
        counts = Counter(labelled)
        if labelled and len(counts) < self.min_classes:
            return counts.most_common(1)[0]
        return None

    def check_val_set(self, runner) -> None:
        metrics = getattr(getattr(runner.val_loop, 'evaluator', None), 'metrics', []) or []
        uses_auc = any('Diagnostic' in type(m).__name__ or 'AUC' in type(m).__name__ for m in metrics)
        if not uses_auc:
            return
        dataset = runner.val_loop.dataloader.dataset
        labels = dataset_labels(dataset)
        if labels is None:
            return
        only = self._single_class([c for c in labels if c >= 0])
        if only is not None:
            only, n = only
            raise ValueError(
                f'validation set {describe_dataset(dataset)}: all {n} samples are of class '
                f'{class_names(dataset, [only])[0]!r}, so the validation AUC is undefined and the "best" '
                'checkpoint would be chosen by chance. Use a validation split with both classes')
