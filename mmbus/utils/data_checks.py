"""What ``tools/train.py`` and ``tools/test.py`` check in a config before they build a runner: every annotation
file and data folder the run would read exists, a validation split has a sample, a metric that reads its own
annotation file (mmdet's ``CocoMetric``) reads the file its dataset reads, a recogniser's misses file belongs to
the crops it is tested on, and a calibration file reads. Each fault is one clear line naming the config key and
the file, instead of a traceback from deep inside a dataset build, or from the first validation after training
has run (pycocotools' "Results do not correspond to current coco set")."""
import json
import os.path as osp


def _datasets(node, where):
    """(where, dataset cfg) of a dataset and the datasets it wraps (``dataset``, ``datasets``, ``labelled``)."""
    from mmbus.datasets.semi_det_dataset import unlabelled_split
    if not isinstance(node, dict):
        return []
    out = [(where, node)]
    if isinstance(node.get('dataset'), dict):
        out += _datasets(node['dataset'], f'{where}.dataset')
    for i, d in enumerate(node.get('datasets') or []):
        out += _datasets(d, f'{where}.datasets.{i}')
    if isinstance(node.get('labelled'), dict):  # LabelledUnlabelledDetDataset: the unlabelled split as it builds it
        out += _datasets(node['labelled'], f'{where}.labelled')
        out += _datasets(unlabelled_split(node['labelled'], node.get('unlabelled')), f'{where}.unlabelled')
    return out


def _samples(path):
    """Images (COCO) or samples (mmengine's ``data_list``) in an annotation file; None where the file is not
    one of those (its dataset says what is wrong when it builds)."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(raw, dict):
        for key in ('images', 'data_list'):
            if isinstance(raw.get(key), list):
                return len(raw[key])
    return None


def _local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def check_data_files(cfg, stage: str = 'train') -> None:
    """Check the datasets and metrics of ``stage``: ``'train'`` (the training set, and the validation set and
    metrics where the config validates) or ``'test'`` (the test set and metrics). Raises FileNotFoundError
    for an annotation file or data folder that does not exist, ValueError for a validation split without a
    sample (an empty test split is allowed: a detector that missed every nodule leaves no crop to test) or a
    metric whose ``ann_file`` is not its dataset's."""
    if stage == 'test':
        sections = ['test_dataloader']
    else:
        sections = ['train_dataloader']
        if cfg.get('val_cfg') is not None and cfg.get('val_dataloader') and cfg.get('val_evaluator'):
            sections.append('val_dataloader')
    anns = []  # (where, path) of the dataset the metrics of the checked split read
    for sec in sections:
        for where, ds in _datasets((cfg.get(sec) or {}).get('dataset'), f'{sec}.dataset'):
            root, ann = ds.get('data_root'), ds.get('ann_file')
            if _local(root) and not osp.isdir(root):
                raise FileNotFoundError(f'{where}.data_root: data folder {root} does not exist')
            if not _local(ann):
                continue
            path = ann if osp.isabs(ann) or not root else osp.join(root, ann)
            if not osp.isfile(path):
                raise FileNotFoundError(f'{where}.ann_file: annotation file {path} does not exist')
            if sec == 'train_dataloader':
                continue
            if sec == 'val_dataloader' and _samples(path) == 0:
                raise ValueError(f'{where}.ann_file: annotation file {path} holds no image: there is nothing to '
                                 'validate on (a dataset too small for its validation share? convert it with a '
                                 'larger one)')
            anns.append((where, path))
    evaluator = 'test_evaluator' if stage == 'test' else 'val_evaluator'
    if sections[-1] == 'train_dataloader' or not cfg.get(evaluator):
        return
    ev = cfg.get(evaluator)
    for i, m in ([(f'.{i}', m) for i, m in enumerate(ev)] if isinstance(ev, (list, tuple)) else [('', ev)]):
        if not isinstance(m, dict):
            continue
        ann, missed = m.get('ann_file'), m.get('missed')
        if _local(ann):
            if not osp.isfile(ann):
                raise FileNotFoundError(f'{evaluator}{i}.ann_file: annotation file {ann} does not exist')
            # the metric scores the predictions against its own file's boxes: another split's would fail, or be
            # scored as misses, once the whole split has run
            if len(anns) == 1 and osp.realpath(ann) != osp.realpath(anns[0][1]):
                raise ValueError(f'{evaluator}{i}.ann_file: {ann} is not the file its dataset reads '
                                 f'({anns[0][0]}.ann_file: {anns[0][1]}); set both, e.g. --cfg-options '
                                 f'{evaluator}{i}.ann_file={anns[0][1]}')
        if _local(missed) and len(anns) == 1:
            _check_missed(f'{evaluator}{i}.missed', missed, *anns[0])
        if _local(m.get('calibration')):  # its metric's own reader, before the runner builds the metric
            from mmbus.evaluation.calibration import load_calibration
            try:
                load_calibration(m['calibration'])
            except (FileNotFoundError, ValueError) as e:
                raise type(e)(f'{evaluator}{i}.calibration: {e}') from None


def _check_missed(key: str, missed: str, where: str, ann: str) -> None:
    """A detector's misses count as wrong answers of the split whose crops they belong to: extract_crops.py
    writes ``<split>.json`` and ``<split>_missed.json`` side by side. The misses of another split beside a
    split's crops, or a ``<split>_missed.json`` of another crop folder (the config's default, left behind
    when only the dataset was pointed elsewhere), would add other nodules to the result."""
    if not osp.isfile(missed):
        raise FileNotFoundError(f'{key}: missed-detection file {missed} does not exist')
    m_dir, m_name = osp.split(osp.realpath(missed))
    a_dir, a_name = osp.split(osp.realpath(ann))
    if not (m_name.endswith('_missed.json') and a_name.endswith('.json')):
        return  # not extract_crops.py's naming: nothing to compare
    split = a_name[:-len('.json')]
    if m_dir != a_dir or m_name[:-len('_missed.json')] != split:
        whose = 'another split' if m_dir == a_dir else 'another crop folder'
        raise ValueError(f'{key}: {missed} holds the misses of {whose} than the crops its dataset reads '
                         f'({where}.ann_file: {ann}); set --cfg-options {key}={osp.join(osp.dirname(ann), split)}'
                         f'_missed.json (or {key}=None)')
