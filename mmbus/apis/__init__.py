from .crop_extraction import (expand_and_clip_box, crop_nodule,  # noqa: F401
                              extract_split_crops, extract_crops)
from .export import export_teacher, load_plain_classifier  # noqa: F401
from .inference import BUSInferencer, init_two_stage, infer  # noqa: F401
