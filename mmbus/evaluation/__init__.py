from .box_iou_metric import BoxIoUMetric  # noqa: F401
from .binary_diagnostic_metric import BinaryDiagnosticMetric  # noqa: F401
from ..visualization import BUSDetVisualizer  # noqa: F401,E402  (paper Fig. 3 drawing of test results)
