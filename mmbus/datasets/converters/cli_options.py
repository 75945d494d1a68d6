"""Command-line options shared by ``bus_to_coco.py`` and ``split_coco.py``."""
from .neardup import DEFAULT_MIN_SPECKLE
from .splits import LABEL_CONFLICT_POLICIES


def add_guard_args(g) -> None:
    """The leakage-guard options, added to an argparse parser or group ``g``."""
    g.add_argument('--dup-threshold', type=int, default=10,
                   help='whole-image look-alikes: dHash Hamming threshold in bits (of 256); '
                        '-1: exact copies only')
    g.add_argument('--no-recrop-guard', action='store_true',
                   help='do not look for re-cropped copies (another zoom/offset of one scan)')
    g.add_argument('--recrop-min-speckle', type=float, default=DEFAULT_MIN_SPECKLE,
                   help='re-crop guard: speckle correlation from which two aligned images are '
                        f'copies of one scan (default {DEFAULT_MIN_SPECKLE})')
    g.add_argument('--label-conflicts', choices=LABEL_CONFLICT_POLICIES, default='keep',
                   help='a group of copies whose labels differ: keep it in one split (default), '
                        'keep it out of val/test (train-only), or leave it out of every split '
                        '(exclude)')
