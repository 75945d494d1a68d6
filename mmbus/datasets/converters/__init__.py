"""Breast-ultrasound dataset converters to COCO JSON, leakage-safe splits, duplicate and
re-crop guard."""
from .busbra import collect_busbra  # noqa: F401
from .busi import collect_busi  # noqa: F401
from .coco_writer import build_coco, load_coco, write_json_atomic  # noqa: F401
from .common import ConversionError, ProblemLog, dhash, mask_boxes, read_image  # noqa: F401
from .convert import (FORMATS, convert_and_split, convert_dataset,  # noqa: F401
                      split_coco_file)
from .duplicates import (connected_groups, duplicate_groups, find_duplicates,  # noqa: F401
                         leakage_groups)
from .neardup import fingerprint  # noqa: F401
from .neardup_verify import find_recrops, verify_pair  # noqa: F401
from .generic import collect_boxes_csv, collect_generic  # noqa: F401
from .splits import (DEFAULT_RATIOS, LABEL_CONFLICT_POLICIES, SPLITS,  # noqa: F401
                     parse_split_spec, split_dataset, summarise, write_split_outputs)
from .compact import compact_coco  # noqa: F401
from .cli_options import FORMAT_OPTIONS, format_option_flags  # noqa: F401
