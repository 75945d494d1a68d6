from .mt_convnet import MTConvNet  # noqa: F401
from .semi_classifier import SemiClassifier  # noqa: F401
from .view_augment import BatchViewAugment  # noqa: F401
