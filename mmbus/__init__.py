"""mmbus: breast ultrasound nodule detection (Faster R-CNN, VGG16) and benign/malignant recognition
(mean teacher) as an OpenMMLab plugin.

Importing ``mmbus`` is cheap (no torch, mmdet or mmpretrain): the dataset converters and the synthetic
generator need only numpy, Pillow and OpenCV. The components are registered with mmdet and mmpretrain by
``import mmbus.registry`` (or :func:`register_all_modules`), which every mmbus config does through
``custom_imports=dict(imports=['mmbus.registry'])``.
"""
from .version import __version__  # noqa: F401


def register_all_modules() -> None:
    """Register every mmbus component with mmdet / mmpretrain (idempotent), and apply the
    checkpoint-loading fix for the pinned stack (see :mod:`mmbus.compat`)."""
    from . import registry  # noqa: F401
