from .bus_dataset import BUSDataset  # noqa: F401
from .crop_dataset import BUSCropDataset  # noqa: F401
from .semi_sampler import LabelledUnlabelledSampler  # noqa: F401
from . import transforms  # noqa: F401
from . import converters  # noqa: F401  (converters to COCO, splits, duplicate guard)
from .synthetic import make_synthetic_dataset  # noqa: F401
