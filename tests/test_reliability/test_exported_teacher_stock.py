"""The exported teacher runs in stock ``ImageClassificationInferencer`` on file paths (it reads
them in colour; the network takes grey crops) and gives the mean teacher's scores."""
import os

import cv2
import numpy as np


def test_exported_teacher_on_file_paths_equals_the_teacher(tiny_semi, crop_root, tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer

    from mmbus.apis.export import export_teacher
    cfg, ckpt, _ = tiny_semi
    out_ckpt, out_cfg = export_teacher(cfg, ckpt, str(tmp_path / 'export'))
    val = os.path.join(crop_root, 'val')
    grey_files = sorted(os.path.join(val, f) for f in os.listdir(val))[:4]
    # the same crops stored as 3-channel colour PNGs (how most viewers save them)
    colour_files = []
    for f in grey_files:
        p = str(tmp_path / ('c_' + os.path.basename(f)))
        cv2.imwrite(p, cv2.cvtColor(cv2.imread(f, cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR))
        colour_files.append(p)

    stock = ImageClassificationInferencer(out_cfg, pretrained=out_ckpt)
    on_paths = np.stack([r['pred_scores'] for r in stock(grey_files)])
    on_colour = np.stack([r['pred_scores'] for r in stock(colour_files)])
    # reference: the SemiClassifier's teacher on the grey crops as training reads them
    semi = ImageClassificationInferencer(cfg, pretrained=ckpt)
    teacher = np.stack([r['pred_scores'] for r in semi([cv2.imread(f, cv2.IMREAD_GRAYSCALE)
                                                        for f in grey_files])])
    np.testing.assert_allclose(on_paths, teacher, rtol=0, atol=1e-6)
    np.testing.assert_allclose(on_colour, teacher, rtol=0, atol=1e-6)
    # grey arrays still work, and tools/test.py's dataset pipeline (grey loader) is unchanged
    grey_arrays = np.stack([r['pred_scores'] for r in stock([cv2.imread(f, cv2.IMREAD_GRAYSCALE)
                                                             for f in grey_files])])
    np.testing.assert_allclose(grey_arrays, teacher, rtol=0, atol=1e-6)


def test_colour_to_grey_matches_opencv_within_one_level():
    from mmcv.transforms import RandomGrayscale

    from mmbus.apis.export import TO_GREY
    t = RandomGrayscale(**{k: v for k, v in TO_GREY.items() if k != 'type'})
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = t(dict(img=colour))['img']
    ref = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    assert out.shape == ref.shape and np.abs(out.astype(int) - ref).max() <= 1
    levels = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert np.array_equal(t(dict(img=levels))['img'][0], np.arange(256))  # grey pixels keep their value
