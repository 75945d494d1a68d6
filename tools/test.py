"""Test (and evaluate) a detector or a classifier checkpoint; the config's ``default_scope`` picks the library.

Detection configs print COCO bbox mAP and mmbus' box IoU metrics; ``--show-dir`` writes images with the
ground-truth box (yellow) and the predicted box (red). Classification configs print the diagnostic metrics.

The checkpoint is loaded weights-only (a crafted file cannot run code) and checked against the model the
config builds: a checkpoint of another model (a detector checkpoint on a classifier config, or the reverse)
ends the run with a message naming both files and exit status 1, instead of metrics from untrained weights.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))  # run from a checkout too

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmbus.registry  # noqa: E402,F401  (registers components, fixes checkpoint loading)
from mmbus.engine.hooks import CheckpointCheckHook  # noqa: E402
from mmbus.utils.checkpoint import CheckpointError  # noqa: E402
from mmbus.utils.data_checks import check_data_files  # noqa: E402
from mmbus.utils.distributed import setup_distributed, teardown_distributed  # noqa: E402
from mmbus.utils.io import atomic_write_json  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) an mmbus model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='dump predictions to a pickle file (.pkl) for offline evaluation')
    parser.add_argument('--out-metrics', help='also write the metrics as JSON to this file')
    parser.add_argument('--show', action='store_true', help='show prediction results in a window')
    parser.add_argument('--show-dir', help='directory (under work_dir/timestamp) for painted images')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--dist-backend', choices=['auto', 'nccl', 'gloo'], default='auto',
                        help='distributed backend: auto = nccl with CUDA, gloo on CPU')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_visualization(cfg, args):
    """Turn the config's visualization hook on, the way mmdet's / mmpretrain's own test.py do."""
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError(f'{args.config}: --show/--show-dir need default_hooks.visualization')
    vis = hooks['visualization']
    if cfg.get('default_scope') == 'mmdet':
        vis['draw'] = True
        vis['test_out_dir'] = args.show_dir
    else:
        vis['enable'] = True
        vis['out_dir'] = args.show_dir
    if args.show:
        vis['show'] = True
        vis['wait_time'] = args.wait_time


def build_cfg(args):
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    check_data_files(cfg, 'test')
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    setup_distributed(cfg, args.launcher, args.dist_backend)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        sys.exit(f'error: --out {args.out}: the dump file must be a .pkl file')
    try:
        cfg = build_cfg(args)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.register_hook(CheckpointCheckHook(checkpoint=args.checkpoint, config=args.config))
    if args.out is not None:
        if cfg.get('default_scope') == 'mmdet':
            from mmdet.evaluation import DumpDetResults as Dump
        else:
            from mmengine.evaluator import DumpResults as Dump
        runner.test_evaluator.metrics.append(Dump(out_file_path=args.out))
    finished = False
    try:
        metrics = evaluate_empty(runner) if _empty_test_set(runner) else runner.test()
        finished = True
    except CheckpointError as e:
        sys.exit(f'error: {e}')
    finally:
        teardown_distributed(finished)
    if args.out_metrics and runner.rank == 0:
        atomic_write_json({k: _plain(v) for k, v in metrics.items()}, args.out_metrics, indent=2)
    return metrics


def _empty_test_set(runner) -> bool:
    return len(runner.test_loop.dataloader.dataset) == 0


def evaluate_empty(runner):
    """The metrics of a test split with no sample to run the model on, e.g. detector crops where the
    detector missed every nodule: the evaluators see no prediction (BinaryDiagnosticMetric still counts the
    misses it was given), and --out dumps an empty list. mmengine's test loop cannot run on an empty
    dataloader."""
    print(f'[mmbus] {runner.cfg.test_dataloader.dataset.get("ann_file", "the test split")}: no sample to test; '
          'evaluating without predictions', flush=True)
    return runner.test_loop.evaluator.evaluate(0)


def _plain(value):
    """JSON-able form of a metric value (numpy / torch scalars and arrays)."""
    if hasattr(value, 'tolist'):
        return value.tolist()
    return value


if __name__ == '__main__':
    main()
