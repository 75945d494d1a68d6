from .box_iou_metric import BoxIoUMetric  # noqa: F401
