r"""Small synthetic stage-2 run: mean teacher vs supervised-basic (and supervised-all) on generated
nodule crops, one fresh dataset per seed, each method through the stock tools/train.py and tools/test.py
with its CPU-quick config.

    .venv/bin/python tools/analysis/mean_teacher_demo.py [--work-dir work_dirs/mean_teacher_demo] \
        [--seeds 0 1 2] [--basic 4] [--extended 800] [--val 200] [--test 400] [--difficulty 0.7] [--framing random] \
        [--epochs 30] [--translate 3] [--zoom 0.15] [--contrast 0.2] [--brightness B] [--consistency-weight 10] \
        [--consistency-on all] [--methods supervised_basic mean_teacher supervised_all] [--jobs 2] [--threads 1]

Defaults are the README's first (session-10) run, about 40 minutes on 2 CPU cores; the README's headline run
adds --framing square --gain 2 --contrast 0.5 --brightness 0.4 --ema-momentum 0.05 --epochs 60. Every method gets
the same views (--translate/--zoom/--contrast/--brightness on top of the configs' flip, brightness and input
noise); --consistency-weight, --consistency-on and --ema-momentum change the mean teacher only. Writes
WORK_DIR/results.{json,md}, WORK_DIR/auc_by_seed.png and per seed seed_S/{crops/,configs/,<method>/,logs/,roc.png}.
A run whose test metrics exist is reused if it was trained with the same config and data (--force reruns it).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmbus.apis.busbra_experiment import METHOD_CONFIGS  # noqa: E402
from mmbus.apis.mean_teacher_demo import METHODS, results_markdown, run_demo  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/mean_teacher_demo')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                   help='one generated dataset (and training seed) per value')
    p.add_argument('--basic', type=int, default=4, help='labelled crops (half malignant)')
    p.add_argument('--extended', type=int, default=800, help='unlabelled crops')
    p.add_argument('--val', type=int, default=200)
    p.add_argument('--test', type=int, default=400)
    p.add_argument('--difficulty', type=float, default=0.7,
                   help='spread of the shape cues (0.5: separated classes, 1.0: overlapping)')
    p.add_argument('--framing', choices=('random', 'margin', 'square'), default='random',
                   help="margin: each crop is the nodule's box plus 15 %% (as real crops are cut); random: "
                   'crops of random shape, a nuisance a few labels can be fitted to; square: square crops of '
                   "random scale around the nodule (no letterbox bars)")
    p.add_argument('--gain', type=float, default=1.0,
                   help='crops: overall brightness x a factor in [1/GAIN, GAIN] (log-uniform), as scanner '
                   'gain varies; 1 = off')
    p.add_argument('--basic-gain', type=float,
                   help='the labelled crops\' gain spread instead of --gain (1: all from one scanner setting)')
    p.add_argument('--translate', type=int, default=3,
                   help='views: random shift of up to N px, every method (the configs: 2)')
    p.add_argument('--zoom', type=float, default=0.15,
                   help='views: random isotropic zoom of +-ZOOM, every method (the configs: 0)')
    p.add_argument('--contrast', type=float, default=0.2,
                   help='views: random contrast change of +-CONTRAST, every method (the configs: 0)')
    p.add_argument('--brightness', type=float,
                   help='views: random brightness offset of +-BRIGHTNESS in [-1, 1] input units, every method '
                   '(the configs: 0.2); widen it to cover the crops\' --gain spread')
    p.add_argument('--consistency-weight', type=float, default=10.0,
                   help='mean teacher w_max (the cpu-quick config: 1)')
    p.add_argument('--consistency-on', choices=('unlabelled', 'all'), default='all',
                   help="mean teacher: samples under the consistency term (the configs: unlabelled); 'all' is "
                   "the original implementation's and gives the teacher the student's batch-norm batch")
    p.add_argument('--ema-momentum', type=float,
                   help='mean teacher: 1 - EMA decay, during and after the ramp-up (the cpu-quick config: '
                   '0.03 then 0.01)')
    p.add_argument('--epochs', type=int, default=30,
                   help='epochs of 20 iterations (the early stopping of the configs still applies)')
    p.add_argument('--epoch-length', type=int, help='iterations per epoch (default: the configs\' 20)')
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=sorted(METHOD_CONFIGS))
    p.add_argument('--threads', type=int, default=1, help='torch threads per run')
    p.add_argument('--jobs', type=int, default=2, help='runs trained at the same time')
    p.add_argument('--force', action='store_true', help='rerun runs whose metrics exist')
    a = p.parse_args(argv)
    if a.basic < 2 or a.extended < 1 or a.val < 2 or a.test < 2:
        p.error('need --basic >= 2 (both classes), --extended >= 1, --val >= 2, --test >= 2')
    if a.difficulty <= 0:
        p.error('--difficulty must be > 0')
    if a.gain < 1 or (a.basic_gain is not None and a.basic_gain < 1):
        p.error('--gain and --basic-gain must be >= 1')
    if not 0 <= a.zoom < 1 or not 0 <= a.contrast < 1 or a.translate < 0:
        p.error('--zoom and --contrast must be in [0, 1), --translate >= 0')
    if a.brightness is not None and a.brightness < 0:
        p.error('--brightness must be >= 0')
    if a.ema_momentum is not None and not 0 < a.ema_momentum < 1:
        p.error('--ema-momentum must be in (0, 1)')
    if a.consistency_weight < 0:
        p.error('--consistency-weight must be >= 0')
    if a.jobs < 1 or a.threads < 1:
        p.error('--jobs and --threads must be >= 1')
    if a.epochs < 1 or (a.epoch_length is not None and a.epoch_length < 1):
        p.error('--epochs and --epoch-length must be >= 1')
    return a


def main(argv=None):
    a = parse_args(argv)
    views = dict(translate=a.translate, zoom=a.zoom, contrast=a.contrast)
    if a.brightness is not None:  # unset: the configs' 0.2, earlier runs' configs unchanged
        views['brightness'] = a.brightness
    res = run_demo(a.work_dir, a.seeds,
                   dict(basic_train=a.basic, extended_train=a.extended, val=a.val, test=a.test),
                   a.difficulty, True, a.framing, a.methods, a.epochs, a.epoch_length, a.threads,
                   a.force, views,
                   a.consistency_weight, a.consistency_on, a.jobs, gain=a.gain,
                   basic_gain=a.basic_gain, ema_momentum=a.ema_momentum)
    print(results_markdown(res['rows'], res['summary']))
    print(f"[mmbus] mean-teacher demo: {osp.join(a.work_dir, 'results.md')}, "
          f"{osp.join(a.work_dir, 'auc_by_seed.png')}")


if __name__ == '__main__':
    main()
