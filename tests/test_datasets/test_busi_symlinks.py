"""The BUSI reader follows a symbolic link out of the data root, and says so by name."""
import os

import cv2
import numpy as np

from mmbus.datasets.converters.busi import collect_busi
from mmbus.datasets.converters.common import ProblemLog


def _image(path, value=100):
    img = np.full((40, 50), value, np.uint8)
    cv2.imwrite(str(path), img)


def test_links_out_of_the_root_are_named(tmp_path):
    root, elsewhere = tmp_path / 'busi', tmp_path / 'elsewhere'
    (root / 'benign').mkdir(parents=True)
    (elsewhere / 'malignant').mkdir(parents=True)
    _image(root / 'benign' / 'a.png')
    _image(root / 'benign' / 'a_mask.png', 255)
    _image(elsewhere / 'b.png')
    os.symlink(elsewhere / 'b.png', root / 'benign' / 'b.png')          # a file linked from outside
    os.symlink(root / 'benign' / 'a.png', root / 'benign' / 'c.png')    # a link inside the root: fine
    os.symlink(elsewhere / 'malignant', root / 'malignant')             # a whole folder from outside
    _image(elsewhere / 'malignant' / 'm.png')
    problems = ProblemLog()
    tasks = collect_busi(str(root), problems)
    assert sorted(t.rel for t in tasks) == ['benign/a.png', 'benign/b.png', 'benign/c.png', 'malignant/m.png']
    warned = {p.path: p.message for p in problems.of_level('warning')}
    assert 'outside the dataset root' in warned['benign/b.png']
    assert str(elsewhere / 'b.png') in warned['benign/b.png']
    assert 'outside the dataset root' in warned['malignant/']
    assert 'benign/c.png' not in warned and 'benign/a.png' not in warned
