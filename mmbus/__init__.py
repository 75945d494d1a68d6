"""mmbus: breast ultrasound nodule detection (Faster R-CNN, VGG16) and benign/malignant recognition
(mean teacher) as an OpenMMLab plugin. Importing it registers every component with mmdet and mmpretrain."""
from .version import __version__  # noqa: F401
from . import compat  # noqa: F401  (must run before any checkpoint is loaded)
from . import datasets, engine, evaluation, models  # noqa: F401,E402  (registration side effects)
from . import visualization  # noqa: F401,E402
from . import apis, utils  # noqa: F401,E402
