"""Learning curve on a crops dataset: test AUC of mean teacher vs supervised-basic as the labelled share
of the basic+extended pool varies (patient-grouped, stratified, seeded, nested subsets; the rest is the
mean teacher's unlabelled set).

    .venv/bin/python tools/analysis/learning_curve.py [--crop-root work_dirs/busbra/crops_gt] \
        [--work-dir work_dirs/busbra/learning_curve] [--shares 0.05 0.10 0.15 0.30] \
        [--schedule cpu|short|tiny] [--max-iters N | --epochs E --epoch-length IT]
        [--config-set cpu_quick|paper] [--consistency-weight W]

Writes WORK_DIR/learning_curve.{json,csv,png} (updated after every point) and per share
share_X/{data/labelled.json,data/unlabelled.json,configs/,<method>/,logs/}. Points whose test metrics exist
are reused (--force reruns them).
"""
import argparse
import math
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmbus.apis.busbra_experiment import CONFIG_SETS  # noqa: E402
from mmbus.apis.learning_curve import run_learning_curve  # noqa: E402

# (epochs, iterations per epoch); None = the cpu-quick config's own (25 x 20)
SCHEDULES = dict(cpu=(None, None), short=(10, 20), tiny=(2, 3))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--crop-root', default='work_dirs/busbra/crops_gt',
                   help='crops dataset with basic_train/extended_train/val/test .json')
    p.add_argument('--work-dir', default='work_dirs/busbra/learning_curve')
    p.add_argument('--shares', type=float, nargs='+', default=[0.05, 0.10, 0.15, 0.30])
    p.add_argument('--methods', nargs='+', default=['mean_teacher', 'supervised_basic'])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--schedule', choices=sorted(SCHEDULES), default='short')
    p.add_argument('--max-iters', type=int, help='total training iterations (overrides --epochs)')
    p.add_argument('--epochs', type=int)
    p.add_argument('--epoch-length', type=int)
    p.add_argument('--config-set', choices=CONFIG_SETS, default='cpu_quick',
                   help='recognition network size: cpu_quick (1/4 width, 32 px) or paper (full width, '
                        '64 px, 64 + 64 per batch; meant for a GPU)')
    p.add_argument('--consistency-weight', type=float,
                   help="mean teacher's w_max (default: the config's)")
    p.add_argument('--force', action='store_true')
    return p.parse_args(argv)


def schedule(args):
    """(epochs, epoch_length) from the preset and the overrides."""
    epochs, length = SCHEDULES[args.schedule]
    if args.epoch_length is not None:
        length = args.epoch_length
    if args.epochs is not None:
        epochs = args.epochs
    if args.max_iters is not None:
        if args.max_iters < 1:
            raise SystemExit('error: --max-iters must be >= 1')
        length = length or 20
        epochs = max(1, math.ceil(args.max_iters / length))
    return epochs, length


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(osp.join(args.crop_root, 'basic_train.json')):
        sys.exit(f'error: {args.crop_root}/basic_train.json not found (run tools/extract_crops.py first)')
    epochs, length = schedule(args)
    rows = run_learning_curve(args.crop_root, args.work_dir, args.shares, args.methods, args.seed,
                              epochs, length, config_set=args.config_set,
                              consistency_weight=args.consistency_weight, force=args.force)
    print('| share | method | labelled | AUC [95% CI] |')
    print('|---|---|---|---|')
    for r in rows:
        print(f"| {100 * r['share']:.0f}% | {r['method']} | {r['labelled']} | {r['auc']:.3f} "
              f"[{r['auc_ci_low']:.3f}, {r['auc_ci_high']:.3f}] |")
    print(f"[mmbus] learning curve: {osp.join(args.work_dir, 'learning_curve.png')}")


if __name__ == '__main__':
    main()
