#!/usr/bin/env python
"""Make a compact copy of a converted COCO dataset (greyscale JPEG images, split files rewritten) to
carry to a machine without the original data.

    python tools/gpu/compact_coco.py SRC_ROOT OUT_DIR [--ann-dir DIR] [--quality 90] [--max-side N]

SRC_ROOT is the folder the records' ``file_name`` paths are relative to (for BUS-BRA the raw dataset
root); the split files ``{basic_train,extended_train,val,test}.json`` are read from ``--ann-dir``
(default SRC_ROOT/annotations: the converter's ``--out-dir``/annotations when it differs). Writes
OUT_DIR/images/**.jpg, OUT_DIR/annotations/*.json (``file_name`` relative to OUT_DIR) and
OUT_DIR/COMPACT.json. Exit status 1 naming the file at fault for a missing split file, a missing or
unreadable image; 2 for bad arguments.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from mmbus.datasets.converters.compact import compact_coco  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('src_root', help='folder the file_name paths are relative to')
    p.add_argument('out_dir', help='the compact copy (replaced if it is an earlier copy)')
    p.add_argument('--ann-dir', default=None, help='folder of the split files (default SRC_ROOT/annotations)')
    p.add_argument('--quality', type=int, default=90, help='JPEG quality 1..100 (default 90)')
    p.add_argument('--max-side', type=int, default=None,
                   help='downscale so the longer side is at most N pixels (default: keep the size)')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        compact_coco(args.src_root, args.out_dir, ann_dir=args.ann_dir, quality=args.quality,
                     max_side=args.max_side)
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as exc:
        print(f'compact_coco: error: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
