"""Copy a crops dataset (tools/extract_crops.py output) with every crop letterboxed to SIZE x SIZE px.

    python tools/analysis/letterbox_crops.py SRC DST --size 64

The JSON files are copied unchanged (img_path stays relative to the root), so every config that reads SRC
reads DST the same way. A config whose pipeline letterboxes to the same SIZE gets exactly the same network
input from DST as from SRC (its LetterboxResize is then the identity); DST is much smaller (BUS-BRA
ground-truth crops: 64 MB -> about 8 MB at 64 px), e.g. to ship crops to a GPU machine.
Nothing is written unless every crop reads: DST is built in DST.tmp and renamed at the end.
"""
import argparse
import glob
import os
import os.path as osp
import shutil
import sys

import cv2

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmbus.datasets.transforms.letterbox import LetterboxResize  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='crops dataset root (holds <split>.json and <split>/ folders)')
    p.add_argument('dst', help='new crops dataset root (must not exist)')
    p.add_argument('--size', type=int, default=64, help='output side in pixels')
    args = p.parse_args(argv)
    if not glob.glob(osp.join(args.src, '*.json')):
        sys.exit(f'error: {args.src} holds no <split>.json (not a crops dataset)')
    if osp.exists(args.dst):
        sys.exit(f'error: {args.dst} exists; remove it first')
    tmp = args.dst.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    box = LetterboxResize(args.size)
    n = 0
    for root, _, files in os.walk(args.src):
        for name in sorted(files):
            src = osp.join(root, name)
            dst = osp.join(tmp, osp.relpath(src, args.src))
            os.makedirs(osp.dirname(dst), exist_ok=True)
            if not name.lower().endswith('.png'):
                shutil.copy2(src, dst)
                continue
            img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
            if img is None:
                shutil.rmtree(tmp, ignore_errors=True)
                sys.exit(f'error: {src} is not a readable image; nothing written')
            cv2.imwrite(dst, box.transform(dict(img=img, img_path=src))['img'])
            n += 1
    os.replace(tmp, args.dst)
    print(f'[mmbus] {n} crops letterboxed to {args.size} px: {args.dst}')


if __name__ == '__main__':
    main()
