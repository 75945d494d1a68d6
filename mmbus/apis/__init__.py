from .crop_extraction import (expand_and_clip_box, crop_nodule,  # noqa: F401
                              extract_split_crops, extract_crops)
from .bundle import (BundleClassifier, BundleError,  # noqa: F401
                     export_bundle)
from .export import (export_teacher, export_teacher_detector,  # noqa: F401
                     load_plain_classifier)
from .inference import BUSInferencer, init_two_stage, infer  # noqa: F401
from .explain import (cam_for_crops, energy_inside, overlay,  # noqa: F401
                      pointing_game)
