# Stage 2 of the GPU kit alone: configs/studies/busbra_gpu.py without its detectors, the four recognisers on
# ground-truth crops over the same draws and learning curve. tools/gpu/run_busbra.sh runs it with
# --stage2-only, and by itself when mmcv's CUDA ops do not build on the lent machine (the recognisers need none).
#   python tools/run_study.py configs/studies/busbra_gpu_stage2.py --jobs 24 --keep-going --device cuda \
#       --cfg-options data.root=gpu_kit/busbra
_base_ = ['./busbra_gpu.py']
name = 'busbra_gpu_stage2'
work_dir = 'work_dirs/busbra_gpu_stage2'
detector = None
detectors = dict(_delete_=True)
crops = dict(_delete_=True, gt=dict(boxes='ground_truth', external=False))
test_sets = [dict(name='gt', crops='gt', split='test', title='BUS-BRA test crops (ground-truth boxes)')]
report = dict(title='BUS-BRA stage 2 at paper size on one GPU: four methods over three labelled draws (5 % labelled)')
toy = dict(detector=None, detectors=None)
