from .box_iou_metric import BoxIoUMetric  # noqa: F401
from .binary_diagnostic_metric import BinaryDiagnosticMetric  # noqa: F401
