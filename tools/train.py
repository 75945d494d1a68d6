"""Train a detector (mmdet config) or a classifier (mmpretrain config) with mmbus registered.

The command line is the stock OpenMMLab one; the config's ``default_scope`` picks the library. Distributed:
``bash tools/dist_train.sh CONFIG NPROC`` (torchrun); on machines without a GPU the gloo backend is used.

Resuming: ``--resume`` without a path continues from the checkpoint ``<work_dir>/last_checkpoint`` names after
checking that it loads; a truncated or corrupt one is skipped (with a warning) for the newest intact
``epoch_*.pth`` / ``iter_*.pth``, and when none is left the run stops with a message naming the files to delete.
``--resume PATH`` and ``load_from`` are checked the same way, and against the model the config builds (a
checkpoint of another model is refused, naming both files). The checkpoints carry the random-number state
(``RandomStateHook``), so a resumed run repeats the uninterrupted one bit for bit.
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
from mmbus.utils.checkpoint import (CheckpointError, find_resumable_checkpoint,  # noqa: E402
                                    verify_checkpoint)
from mmbus.utils.data_checks import check_data_files  # noqa: E402
from mmbus.utils.distributed import setup_distributed, teardown_distributed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an mmbus model (mmdet or mmpretrain config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or without a path from the latest '
                        'checkpoint in the work directory')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. train_cfg.max_iters=100)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--dist-backend', choices=['auto', 'nccl', 'gloo'], default='auto',
                        help='distributed backend: auto = nccl with CUDA, gloo on CPU')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args):
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir priority: CLI > config > config file name
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError(f'{args.config}: --auto-scale-lr needs auto_scale_lr.base_batch_size '
                               'in the config')
        cfg.auto_scale_lr.enable = True
    # resume priority: explicit checkpoint > latest intact one in work_dir
    if args.resume == 'auto' or (args.resume is None and cfg.get('resume') and not cfg.get('load_from')):
        latest = find_resumable_checkpoint(cfg.work_dir, log=lambda msg: print(msg, file=sys.stderr))
        cfg.resume = latest is not None
        cfg.load_from = latest
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume} does not exist')
        verify_checkpoint(args.resume)
        cfg.resume = True
        cfg.load_from = args.resume
    elif cfg.get('load_from') and osp.isfile(cfg.load_from):
        verify_checkpoint(cfg.load_from)  # URLs are fetched (and checked) by mmengine
    elif cfg.get('load_from') and '://' not in str(cfg.load_from):
        raise FileNotFoundError(
            f'{args.config}: load_from checkpoint {cfg.load_from} does not exist (train the model it names '
            'first, or pass --cfg-options load_from=PATH)')
    check_data_files(cfg)
    setup_distributed(cfg, args.launcher, args.dist_backend)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if cfg.get('load_from'):
        runner.register_hook(CheckpointCheckHook(checkpoint=cfg.load_from, config=args.config))
    finished = False
    try:
        runner.train()
        finished = True
    except CheckpointError as e:
        sys.exit(f'error: {e}')
    finally:
        teardown_distributed(finished)


if __name__ == '__main__':
    main()
