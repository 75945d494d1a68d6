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


#: the format options each format reads (``--images``, ``--masks``, ``--labels``, ``--mask-pattern``,
#: ``--boxes``; default layouts in ``bus_to_coco.py --help``)
FORMAT_OPTIONS = {'busi': (), 'busbra': ('images', 'masks'),
                  'generic': ('images', 'masks', 'labels', 'mask_pattern'),
                  'boxes-csv': ('images', 'boxes')}


def format_option_flags(fmt: str, options, where: str = 'format_options') -> list:
    """``bus_to_coco.py`` flags of a dict of format options (a study's ``data.format_options``), refusing an
    unknown format or an option the format does not read, naming ``where``."""
    if fmt not in FORMAT_OPTIONS:  # refused when the study is planned, not when its conversion runs
        raise ValueError(f'{where.replace("_options", "")}: unknown format {fmt!r} (one of '
                         f'{", ".join(FORMAT_OPTIONS)})')
    known = FORMAT_OPTIONS[fmt]
    for k in options or {}:
        if k not in known:
            raise ValueError(f'{where}: {k!r} does not apply to format {fmt!r} (it reads: '
                             f'{", ".join(known) or "no format option"})')
    return [a for k, v in (options or {}).items() for a in (f'--{k.replace("_", "-")}', str(v))]
