"""Data stages of a study: where the images, the COCO splits and the crops come from, for each ``data.type`` of
a spec (``synthetic_hospitals``, ``dataset``, ``coco``, ``synthetic_crops``, ``crops``: what each reads is
documented once, in ``configs/studies/README.md``)."""
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Dict, List

from mmbus.reporting.context import REPO_ROOT, ImageSet, resolve_path  # noqa: F401 (re-exported)
from mmbus.datasets.converters import SPLITS, format_option_flags
from .stages import Stage


def tool(rel: str) -> str:
    path = osp.join(REPO_ROOT, rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'tool missing: {path}')
    return path


def py(*args) -> List[str]:
    return [sys.executable] + [str(a) for a in args]


@dataclass
class DataLayout:
    stages: List[Stage] = field(default_factory=list)
    #: 'internal' (split by the protocol) and, when present, 'external' (its test split only)
    sets: Dict[str, ImageSet] = field(default_factory=dict)


def _display(name: str) -> str:
    """'hospital_a' -> 'hospital A'."""
    return ' '.join(w.upper() if len(w) == 1 else w for w in name.split('_'))


def _convert_args(data: dict, fmt: str) -> List[str]:
    args = ['--seed', data.get('seed', 0)] + format_option_flags(fmt, data.get('format_options'), 'data.format_options')
    if data.get('ratios'):
        args += ['--split', 'ratios', '--ratios', data['ratios']]
    if data.get('balanced'):
        args += ['--balanced', data['balanced']]
    return args + _selection_args(data.get('where'), data.get('where_not')) + ['--no-progress']


def _selection_args(where=None, where_not=None) -> List[str]:
    """``--where`` / ``--where-not`` of the converter from a dict (``{'device': 'Toshiba'}``) or list of
    ``KEY=REGEX`` strings."""
    out = []
    for flag, sel in (('--where', where), ('--where-not', where_not)):
        items = [f'{k}={v}' for k, v in sel.items()] if isinstance(sel, dict) else list(sel or [])
        for item in items:
            out += [flag, item]
    return out


def image_data(data: dict, work_dir: str) -> DataLayout:
    """Stages and layout of the ``synthetic_hospitals`` and ``dataset`` kinds."""
    conv = tool('tools/dataset_converters/bus_to_coco.py')
    out = DataLayout()
    kind = data['type']
    if kind == 'synthetic_hospitals':
        root = resolve_path(data.get('root', '{work_dir}/data'), work_dir)
        gen = tool('tools/dataset_converters/make_synthetic_bus.py')
        for i, (name, n) in enumerate(data['images'].items()):
            cmd = py(gen, osp.join(root, name), '--num-images', n, '--seed', data.get('seed', 0) + i,
                     '--style', 'b' if i else 'a', '--overwrite', '--no-progress')
            if data.get('difficulty') is not None:
                cmd += ['--difficulty', str(data['difficulty'])]
            out.stages.append(Stage(f'generate_{name}', cmd, inputs=[gen], outputs=[osp.join(root, name)],
                                    desc=f'synthetic {name} ({n} images)'))
        names = list(data['images'])
        a = osp.join(root, names[0])
        out.sets['internal'] = ImageSet(a, a, f'Internal test ({_display(names[0])})')
        if len(names) > 1:
            b = osp.join(root, names[1])
            out.sets['external'] = ImageSet(b, b, f'External test ({_display(names[1])})')
        fmt, ext_fmt = 'busi', 'busi'
    elif kind == 'dataset':
        if not data.get('root'):
            raise ValueError('data.root is required for data.type="dataset" (e.g. --cfg-options '
                             'data.root=/data/BUSI data.format=busi)')
        a = resolve_path(data['root'], work_dir)
        out.sets['internal'] = ImageSet(a, osp.join(work_dir, 'annotations_internal'), 'Internal test')
        if data.get('external_root') or data.get('external_where'):
            # external_where alone: images of the same dataset held out (e.g. another scanner's)
            b = resolve_path(data.get('external_root') or data['root'], work_dir)
            out.sets['external'] = ImageSet(b, osp.join(work_dir, 'annotations_external'),
                                            data.get('external_title', 'External test'))
        fmt = data.get('format', 'busi')
        ext_fmt = data.get('external_format') or fmt
    elif kind == 'coco':
        if not data.get('root'):
            raise ValueError('data.root is required for data.type="coco" (a converted dataset folder)')
        a = resolve_path(data['root'], work_dir)
        out.sets['internal'] = ImageSet(a, a, data.get('title', 'Internal test'))
        return out
    else:
        raise ValueError(f'unknown data.type {kind!r}')
    s = out.sets['internal']
    out.stages.append(Stage('convert_internal',
                            py(conv, s.images, '--format', fmt, '--out-dir', s.ann_root, *_convert_args(data, fmt)),
                            inputs=[conv, s.images], outputs=[s.ann(x) for x in SPLITS],
                            desc='COCO conversion + patient-grouped split'))
    if 'external' in out.sets:
        e = out.sets['external']
        out.stages.append(Stage('convert_external',
                                py(conv, e.images, '--format', ext_fmt, '--out-dir', e.ann_root,
                                   '--external-test', *_selection_args(data.get('external_where')), '--no-progress',
                                   *format_option_flags(ext_fmt, data.get('external_format_options'),
                                                        'data.external_format_options')),
                                inputs=[conv, e.images], outputs=[e.ann('test')],
                                desc='COCO conversion of the external test set'))
    return out


def crop_stage(name: str, crops: dict, layout: DataLayout, out_dir: str, det_cfg=None, det_ckpt=None,
               device: str = 'cpu') -> Stage:
    """``tools/extract_crops.py`` for one crop set: ground-truth boxes, or the trained detector's top box
    for the splits not in ``gt_splits`` (misses listed and later counted as wrong answers)."""
    ext = tool('tools/extract_crops.py')
    s = layout.sets['internal']
    splits = list(crops.get('splits', SPLITS))
    detector = crops.get('boxes', 'ground_truth') == 'detector'
    extra = []
    if 'external' in layout.sets and crops.get('external', True):
        e = layout.sets['external']
        extra = ['--external-ann-file', e.ann('test'), '--external-data-root', e.images]
    outputs = [osp.join(out_dir, f'{x}.json') for x in splits] + (
        [osp.join(out_dir, 'test_external.json')] if extra else [])

    def cmd():
        c = [ext, s.images, '--ann-dir', osp.join(s.ann_root, 'annotations'), '--out-dir', out_dir,
             '--splits', *splits, '--margin', crops.get('margin', 10), *extra]
        if detector:
            c += ['--det-config', det_cfg(), '--det-checkpoint', det_ckpt(), '--score-thr',
                  crops.get('score_thr', 0.05), '--device', device,
                  '--gt-splits', *crops.get('gt_splits', ['basic_train', 'val'])]
        return py(*c)

    def inputs():
        files = [ext] + [s.ann(x) for x in splits] + ([layout.sets['external'].ann('test')] if extra else [])
        return files + ([det_cfg(), det_ckpt()] if detector else [])

    what = 'detector boxes' if detector else 'ground-truth boxes'
    return Stage(f'crops_{name}', cmd, inputs=inputs, outputs=outputs, desc=f'nodule crops ({what})')


def synthetic_crops_stage(data: dict, seed: int, out_dir: str) -> Stage:
    """Generated crops (``tools/dataset_converters/make_synthetic_crops.py``) for one seed."""
    gen = tool('tools/dataset_converters/make_synthetic_crops.py')
    c = data['counts']
    args = ['--basic', c['basic_train'], '--extended', c['extended_train'], '--val', c['val'], '--test',
            c['test'], '--seed', seed, '--difficulty', data.get('difficulty', 1.0), '--framing',
            data.get('framing', 'random'), '--gain', data.get('gain', 1.0)]
    if data.get('balanced_basic', True):
        args.append('--balanced-basic')
    # work_dir: a half-written or outdated crop set is cleared before the generator runs again
    return Stage(f'crops_seed{seed}', py(gen, out_dir, *args), inputs=[gen], work_dir=out_dir,
                 outputs=[osp.join(out_dir, f'{x}.json') for x in SPLITS],
                 desc=f'synthetic crops, seed {seed}')
