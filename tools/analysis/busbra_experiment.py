"""Issue 7, steps 1-3 on BUS-BRA in one command (CPU-sized by default).

    .venv/bin/python tools/analysis/busbra_experiment.py /path/to/BUS-BRA/BUSBRA \
        [--work-dir work_dirs/busbra] [--schedule cpu|tiny] [--det-iters N] [--det-scale PX]
        [--cls-epochs E] [--cls-epoch-length IT] [--skip-detector] [--config-set cpu_quick|paper]
        [--consistency-weight W] [--force]

1. convert + patient-grouped, stratified split (seed 0): basic-train 12% + validation 3% (the paper's
   15% labelled set, 80/20), extended-train 65% (labels hidden), test 20%;
2. ground-truth crops of all splits; the CPU-quick Faster R-CNN VGG16 (BatchNorm, random init: no ImageNet
   weights can be downloaded here) trained on basic-train only, tested on the test split (COCO mAP + box
   IoU); detector crops of the test split from the same test pass (tools/test.py --out);
3. mean teacher, supervised-basic and supervised-all (CPU-quick configs) trained on ground-truth crops,
   each tested on ground-truth and on detector test crops (detector misses count as wrong answers).

Writes work_dirs/busbra/{results.json,results.md,roc_gt.png,roc_det.png} plus every config run
(configs/) and log (logs/). Steps whose outputs exist are skipped (resume); --force redoes them.
Schedules: cpu = detector 160 iterations at 224 px, classifiers as in their cpu-quick configs
(25 epochs x 20 iterations, early stopping on validation AUC); tiny = detector 20 iterations, classifiers
3 epochs x 5 iterations (a smoke test of the whole chain, numbers meaningless).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmbus.apis.busbra_experiment import CONFIG_SETS, METHOD_CONFIGS, Experiment  # noqa: E402

SCHEDULES = dict(cpu=dict(det_iters=160, det_scale=224, cls_epochs=None, cls_epoch_length=None),
                 tiny=dict(det_iters=20, det_scale=160, cls_epochs=3, cls_epoch_length=5))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('data_root', help='BUS-BRA root (holds Images/, Masks/, bus_data.csv)')
    p.add_argument('--work-dir', default='work_dirs/busbra')
    p.add_argument('--schedule', choices=sorted(SCHEDULES), default='cpu')
    p.add_argument('--ratios', default='basic_train=0.12,extended_train=0.65,val=0.03,test=0.2')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--det-iters', type=int, help='detector training iterations (batch 2)')
    p.add_argument('--det-scale', type=int, help='detector input bound in pixels')
    p.add_argument('--cls-epochs', type=int, help='classifier epochs')
    p.add_argument('--cls-epoch-length', type=int, help='classifier iterations per epoch')
    p.add_argument('--methods', nargs='+', default=list(METHOD_CONFIGS), choices=list(METHOD_CONFIGS))
    p.add_argument('--score-thr', type=float, default=0.05, help='detector score threshold for crops')
    p.add_argument('--det-test-shards', type=int, default=1,
                   help='run the detector test in this many parallel processes (merged, evaluated once)')
    p.add_argument('--skip-detector', action='store_true',
                   help='do not train/test the detector here (classifiers are still tested on '
                        'WORK_DIR/crops_det when it exists, e.g. made on another machine)')
    p.add_argument('--config-set', choices=CONFIG_SETS, default='cpu_quick',
                   help='recognition network size: cpu_quick (1/4 width, 32 px) or paper (full width, '
                        '64 px, 64 + 64 per batch; meant for a GPU)')
    p.add_argument('--consistency-weight', type=float,
                   help="mean teacher's w_max (default: the config's)")
    p.add_argument('--force', action='store_true', help='redo steps whose outputs exist')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isdir(args.data_root):
        sys.exit(f'error: BUS-BRA root {args.data_root} does not exist')
    sched = dict(SCHEDULES[args.schedule])
    for k in sched:
        if getattr(args, k) is not None:
            sched[k] = getattr(args, k)
    exp = Experiment(args.data_root, args.work_dir, ratios=args.ratios, seed=args.seed,
                     methods=args.methods, score_thr=args.score_thr,
                     skip_detector=args.skip_detector,
                     det_test_shards=args.det_test_shards, config_set=args.config_set,
                     consistency_weight=args.consistency_weight, force=args.force, **sched)
    res = exp.run()
    print(open(osp.join(exp.work_dir, 'results.md')).read())
    print(f"[mmbus] BUS-BRA results: {osp.join(exp.work_dir, 'results.json')}; ROC: {res['rocs']}")


if __name__ == '__main__':
    main()
