"""Benchmark the mean-teacher components; prints one table with ratios.

1. Training step time: SemiClassifier on a 64 labelled + 64 unlabelled batch
   (student forward/backward on 128 + teacher forward on the 64 unlabelled +
   Adam step, with and without the MeanTeacherHook EMA update; and with
   ``consistency_on='all'``, where the teacher runs on all 128) over a plain
   ImageClassifier step on 128 labelled samples, same MTConvNet backbone;
   and the FixMatchClassifier step (one student pass over the 128 weak views
   + the 64 strong views of the unlabelled, StrongViewAugment included).
   Target: <= 1.35 (the mean teacher, consistency on the unlabelled).
2. EMA update time: MeanTeacherHook.update (one fused torch._foreach_lerp_)
   over
     * one lerp_ of a single flat buffer holding all parameters (the memory
       bandwidth floor; target <= 1.2),
     * mmdet's MeanTeacherHook.momentum_update (mul_/add_ loop),
     * mmengine's ExponentialMovingAverage.update_parameters,
   on the same model (parameters only, buffer_policy='skip' for ours).

Example (CPU-sized):
    python tools/benchmarks/bench_mean_teacher.py --width 0.25 --size 32 \
        --labelled 64 --unlabelled 64 --steps 5 --ema-width 1.0
"""
import argparse
import copy
import statistics
import time

import torch

import mmbus.registry  # noqa: F401  (registers the components)
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--width', type=float, default=1.0,
                   help='MTConvNet widen_factor for the step benchmark')
    p.add_argument('--ema-width', type=float, default=1.0,
                   help='MTConvNet widen_factor for the EMA benchmark')
    p.add_argument('--size', type=int, default=32, help='input px')
    p.add_argument('--labelled', type=int, default=64)
    p.add_argument('--unlabelled', type=int, default=64)
    p.add_argument('--steps', type=int, default=10, help='timed steps')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--ema-repeats', type=int, default=50)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    return p.parse_args()


def sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def timed(fn, steps, warmup, device):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def parts(width):
    return dict(
        backbone=dict(type='MTConvNet', in_channels=1, widen_factor=width),
        head=dict(type='LinearClsHead', num_classes=2,
                  in_channels=int(round(128 * width))))


def step_benchmark(a):
    dev = a.device
    n = a.labelled + a.unlabelled
    torch.manual_seed(0)
    x = torch.randn(n, 1, a.size, a.size, device=dev)
    sup_ds = [DataSample().set_gt_label(i % 2) for i in range(n)]
    semi_ds = [DataSample().set_gt_label(i % 2 if i < a.labelled else -1)
               for i in range(n)]
    aug = dict(type='BatchViewAugment', flip_prob=0.5, brightness=0.2,
               noise_std=0.15)

    sup = MODELS.build(dict(type='ImageClassifier', **parts(a.width))).to(dev)
    semi = MODELS.build(dict(type='SemiClassifier', view_augment=aug,
                             **parts(a.width))).to(dev)
    semi_all = MODELS.build(dict(type='SemiClassifier', view_augment=aug,
                                 consistency_on='all',
                                 **parts(a.width))).to(dev)
    fixmatch = MODELS.build(dict(type='FixMatchClassifier', view_augment=aug,
                                 strong_augment=dict(type='StrongViewAugment'),
                                 **parts(a.width))).to(dev)
    sup_aug = MODELS.build(aug)
    from mmbus.engine.hooks import MeanTeacherHook
    hook = MeanTeacherHook()
    hook.prepare(semi)

    def make_step(model, loss_fn, ema=False):
        opt = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=0.003)
        model.train()

        def step():
            losses = loss_fn()
            total = sum(v for k, v in losses.items() if 'loss' in k)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if ema:
                hook.update(0.001)
        return step

    t_sup = timed(make_step(sup, lambda: sup.loss(sup_aug(x), sup_ds)),
                  a.steps, a.warmup, dev)
    t_semi = timed(make_step(semi, lambda: semi.loss(x, semi_ds)), a.steps,
                   a.warmup, dev)
    t_semi_ema = timed(make_step(semi, lambda: semi.loss(x, semi_ds), True),
                       a.steps, a.warmup, dev)
    t_semi_all = timed(make_step(semi_all,
                                 lambda: semi_all.loss(x, semi_ds)),
                       a.steps, a.warmup, dev)
    t_fixmatch = timed(make_step(fixmatch, lambda: fixmatch.loss(x, semi_ds)),
                       a.steps, a.warmup, dev)
    return t_sup, t_semi, t_semi_ema, t_semi_all, t_fixmatch


def ema_benchmark(a):
    dev = a.device
    semi = MODELS.build(dict(type='SemiClassifier',
                             **parts(a.ema_width))).to(dev)
    n_params = sum(p.numel() for p in semi.student.parameters())
    from mmbus.engine.hooks import MeanTeacherHook
    ours = MeanTeacherHook(buffer_policy='skip')
    ours.prepare(semi)
    flat_t = torch.zeros(n_params, device=dev)
    flat_s = torch.randn(n_params, device=dev)

    rows = [('mmbus MeanTeacherHook (_foreach_lerp_)',
             timed(lambda: ours.update(0.001), a.ema_repeats, 5, dev)),
            ('flat buffer lerp_ (floor)',
             timed(lambda: flat_t.lerp_(flat_s, 0.001), a.ema_repeats, 5,
                   dev))]
    try:
        from mmdet.engine.hooks import MeanTeacherHook as MMDetHook
        mmdet_hook = MMDetHook(momentum=0.001, skip_buffer=True)
        rows.append(('mmdet MeanTeacherHook.momentum_update',
                     timed(lambda: mmdet_hook.momentum_update(semi, 0.001),
                           a.ema_repeats, 5, dev)))
    except ImportError as e:
        rows.append((f'mmdet MeanTeacherHook (unavailable: {e})', None))
    from mmengine.model import ExponentialMovingAverage
    ema = ExponentialMovingAverage(copy.deepcopy(semi.student),
                                   momentum=0.001, device=torch.device(dev))
    rows.append(('mmengine ExponentialMovingAverage.update_parameters',
                 timed(lambda: ema.update_parameters(semi.student),
                       a.ema_repeats, 5, dev)))
    return n_params, rows


def main():
    a = parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f'device={a.device} threads={torch.get_num_threads()} '
          f'torch={torch.__version__}')
    t_sup, t_semi, t_semi_ema, t_semi_all, t_fixmatch = step_benchmark(a)
    n = a.labelled + a.unlabelled
    print(f'\n## Training step, MTConvNet width {a.width}, '
          f'{a.size}x{a.size} px, median of {a.steps} steps')
    print(f"| {'step':<52} | {'time (ms)':>10} | {'ratio':>6} |")
    print(f"|{'-' * 54}|{'-' * 12}|{'-' * 8}|")
    for name, t in (
            (f'ImageClassifier, {n} labelled', t_sup),
            (f'SemiClassifier, {a.labelled} + {a.unlabelled}', t_semi),
            (f'SemiClassifier, {a.labelled} + {a.unlabelled}, + EMA update',
             t_semi_ema),
            (f'SemiClassifier, {a.labelled} + {a.unlabelled}, consistency on all',
             t_semi_all),
            (f'FixMatchClassifier, {a.labelled} + {a.unlabelled} (strong views)',
             t_fixmatch)):
        print(f'| {name:<52} | {t * 1e3:>10.1f} | {t / t_sup:>6.3f} |')
    print('  target: SemiClassifier / ImageClassifier <= 1.35 (consistency '
          'on the unlabelled, the default)')

    n_params, rows = ema_benchmark(a)
    ours = rows[0][1]
    print(f'\n## EMA teacher update, MTConvNet width {a.ema_width} '
          f'({n_params / 1e6:.2f} M parameters), median of {a.ema_repeats}')
    print(f"| {'implementation':<52} | {'time (ms)':>10} | "
          f"{'ours / it':>9} |")
    print(f"|{'-' * 54}|{'-' * 12}|{'-' * 11}|")
    for name, t in rows:
        if t is None:
            print(f'| {name:<52} | {"n/a":>10} | {"n/a":>9} |')
        else:
            print(f'| {name:<52} | {t * 1e3:>10.3f} | {ours / t:>9.3f} |')
    print('  target: ours / flat-buffer floor <= 1.2')


if __name__ == '__main__':
    main()
