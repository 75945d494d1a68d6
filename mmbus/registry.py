"""Registers every mmbus component with mmdet and mmpretrain (import side effects).

Configs point here through ``custom_imports=dict(imports=['mmbus.registry'])``; tools that build models
without a config (benchmarks, inference) import it too. ``compat`` comes first: it must run before any
checkpoint is loaded.
"""
from . import compat  # noqa: F401
from .datasets import bus_dataset, crop_dataset, semi_sampler, transforms  # noqa: F401,E402
from .datasets import semi_det_dataset, semi_det_sampler  # noqa: F401,E402
from .engine import hooks, optimizers  # noqa: F401,E402
from .evaluation import binary_diagnostic_metric, box_iou_metric  # noqa: F401,E402
from .models import (fixmatch_classifier, gated_soft_teacher, mt_convnet, semi_classifier,  # noqa: F401,E402
                     strong_view_augment, vgg_fc_transfer, view_augment)
from .visualization import bus_det_visualizer  # noqa: F401,E402
