"""Training and inference speed and peak memory of the paper's detector beside mmdet's stock
Faster R-CNN (ResNet-50 FPN), at the same input size.

Models (random weights: no checkpoint is downloaded):
  paper      configs/mmbus/faster_rcnn_vgg16_bus.py (VGG16 conv5_3, 4096-d fc6/fc7, 128 RoIs)
  cpu_quick  configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py (BN VGG16, 1024-d FCs, 64 RoIs)
  mmdet_r50  mmdet's configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py, one class

Every model and phase (training, inference) runs in its own subprocess, so the peak memory
(CPU: getrusage ru_maxrss of that process, which includes the Python/torch runtime and the
model; GPU: torch.cuda.max_memory_allocated) belongs to that model and phase alone. Inputs
are random grey images (3 equal channels) of --size HxW pixels with one random box each; a
training step is forward + backward + SGD step; inference is test_step (RPN + RoI head + NMS).

  python tools/benchmarks/bench_detector.py                       # paper size 600x1000
  python tools/benchmarks/bench_detector.py --size 320x320 --train-iters 3 --infer-iters 5
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = ('paper', 'cpu_quick', 'mmdet_r50')


def model_config(name: str):
    from mmengine.config import Config
    if name == 'paper':
        cfg = Config.fromfile(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus.py'))
        cfg.model.backbone.init_cfg = None  # no ImageNet download; speed does not depend on it
        cfg.model.roi_head.bbox_head.init_cfg = None
    elif name == 'cpu_quick':
        cfg = Config.fromfile(
            osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py'))
    elif name == 'mmdet_r50':
        import mmdet
        path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'faster_rcnn',
                        'faster-rcnn_r50_fpn_1x_coco.py')
        if not osp.exists(path):
            raise FileNotFoundError(f'mmdet stock config not found: {path}')
        cfg = Config.fromfile(path)
        cfg.model.backbone.init_cfg = None  # torchvision://resnet50 would be downloaded
        cfg.model.roi_head.bbox_head.num_classes = 1
    else:
        raise ValueError(f'unknown model {name!r}; choose from {MODELS}')
    return cfg


def make_batch(batch_size: int, h: int, w: int, device: str, seed: int):
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch_size):
        grey = torch.randint(0, 256, (1, h, w), generator=g, dtype=torch.uint8)
        inputs.append(grey.expand(3, h, w).clone())
        bw, bh = w // 4, h // 4
        x = int(torch.randint(0, w - bw, (1, ), generator=g))
        y = int(torch.randint(0, h - bh, (1, ), generator=g))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                        scale_factor=(1.0, 1.0), pad_shape=(h, w)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[x, y, x + bw, y + bh]], dtype=torch.float32),
            labels=torch.zeros(1, dtype=torch.long))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def worker(args) -> dict:
    import torch
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope

    import mmbus.registry  # noqa: F401
    from mmdet.registry import MODELS as DET_MODELS
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = 'cuda' if torch.cuda.is_available() and not args.cpu else 'cpu'
    init_default_scope('mmdet')
    model = DET_MODELS.build(model_config(args.worker).model)
    model.init_weights()
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    h, w = args.size
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    if args.phase == 'infer':
        return _infer(args, model, device, sync, n_params)
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    model.train()
    times = []
    for i in range(args.warmup + args.train_iters):
        data = make_batch(args.batch_size, h, w, device, seed=i)
        sync()
        t0 = time.perf_counter()
        model.train_step(data, optim)
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    train_ips = args.batch_size * len(times) / sum(times)
    return dict(model=args.worker, device=device, params=n_params, train_ips=train_ips,
                train_mem=_peak_memory(device))


def _infer(args, model, device, sync, n_params) -> dict:
    import torch
    h, w = args.size
    model.eval()
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.infer_iters):
            data = make_batch(1, h, w, device, seed=1000 + i)
            sync()
            t0 = time.perf_counter()
            model.test_step(data)
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    return dict(model=args.worker, device=device, params=n_params,
                infer_ips=len(times) / sum(times), infer_mem=_peak_memory(device))


def _peak_memory(device: str) -> int:
    """Bytes: CUDA peak allocation, or this process's peak RSS (ru_maxrss is KiB on Linux)."""
    import torch
    if device == 'cuda':
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parse_size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--size must be HxW in pixels, e.g. 600x1000, '
                                         f'got {text!r}')
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError('--size: both sides must be >= 32 pixels')
    return h, w


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=parse_size, default=(600, 1000),
                        help='input HxW in pixels (default 600x1000, the Faster R-CNN scale '
                        'the paper\'s VGG16 detector is built for)')
    parser.add_argument('--models', nargs='+', choices=MODELS, default=list(MODELS))
    parser.add_argument('--train-iters', type=int, default=3)
    parser.add_argument('--infer-iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations first')
    parser.add_argument('--batch-size', type=int, default=1, help='training images per step')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--cpu', action='store_true', help='stay on CPU even with a GPU')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--phase', choices=('train', 'infer'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.train_iters, args.infer_iters) < 1:
        parser.error('--train-iters and --infer-iters must be >= 1')

    if args.worker:
        print('RESULT ' + json.dumps(worker(args)))
        return

    rows = []
    for name in args.models:
        row = {}
        for phase in ('train', 'infer'):
            cmd = [sys.executable, osp.abspath(__file__), '--worker', name, '--phase', phase,
                   '--size', f'{args.size[0]}x{args.size[1]}', '--train-iters',
                   str(args.train_iters), '--infer-iters', str(args.infer_iters), '--warmup',
                   str(args.warmup), '--batch-size', str(args.batch_size), '--threads',
                   str(args.threads)] + (['--cpu'] if args.cpu else [])
            steps = args.train_iters if phase == 'train' else args.infer_iters
            print(f'[bench_detector] {name} {phase}: {args.warmup}+{steps} steps at '
                  f'{args.size[0]}x{args.size[1]} px ...', flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
            if proc.returncode != 0 or not lines:
                sys.exit(f'[bench_detector] {name} {phase} failed:\n{proc.stderr[-3000:]}')
            row.update(json.loads(lines[-1][len('RESULT '):]))
            print(f'[bench_detector] {name} {phase} done in {time.perf_counter() - t0:.0f} s',
                  flush=True)
        row['mem_kind'] = 'cuda max allocated' if row['device'] == 'cuda' else 'peak RSS'
        rows.append(row)
    print(format_table(rows, args))


def format_table(rows, args) -> str:
    from mmbus.utils.markdown import md_table
    ref = next((r for r in rows if r['model'] == 'paper'), rows[0])
    mib = 1024**2
    head = (f'Faster R-CNN benchmark, input {args.size[0]}x{args.size[1]} px, train batch '
            f'{args.batch_size}, {args.threads} threads, device {ref["device"]}; memory = '
            f'{ref["mem_kind"]}; ratios relative to {ref["model"]}')
    cols = ['model', 'params (M)', 'train img/s', 'x', 'infer img/s', 'x',
            'train mem (MiB)', 'x', 'infer mem (MiB)', 'x']
    return head + '\n' + md_table(cols, [[
        r['model'], f'{r["params"] / 1e6:.1f}',
        f'{r["train_ips"]:.3f}', f'{r["train_ips"] / ref["train_ips"]:.2f}',
        f'{r["infer_ips"]:.3f}', f'{r["infer_ips"] / ref["infer_ips"]:.2f}',
        f'{r["train_mem"] / mib:.0f}', f'{r["train_mem"] / ref["train_mem"]:.2f}',
        f'{r["infer_mem"] / mib:.0f}', f'{r["infer_mem"] / ref["infer_mem"]:.2f}',
    ] for r in rows])


if __name__ == '__main__':
    main()
