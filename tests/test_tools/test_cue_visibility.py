"""tools/analysis/cue_visibility.py: one informative cue at a time, the ideal observer beside the recogniser."""
import importlib.util
import json
import math
import os.path as osp

import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('cue_visibility', osp.join(REPO, 'tools/analysis/cue_visibility.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ideal_auc_by_hand(tool):
    from scipy.stats import norm
    # one cue at 2 SD: Phi(2 / sqrt 2) = Phi(1.4142) = 0.9214
    assert tool.ideal_auc('orientation', 2.0, 0.5) == pytest.approx(0.9214, abs=1e-4)
    # all cues at difficulty 0.3: D = 4 * 0.7^1.15 = 2.6563
    assert tool.ideal_auc('all', 2.0, 0.3) == pytest.approx(norm.cdf(4 * 0.7 ** 1.15 / math.sqrt(2)))


def test_only_the_measured_cue_depends_on_the_class(tool):
    from mmbus.datasets.synthetic import CUE_NAMES
    rng = np.random.default_rng(0)

    def cues(malignant):
        return np.array([[getattr(tool.draw_cues(rng, 'calcification', malignant, 2.0, 0.5), n) for n in CUE_NAMES]
                         for _ in range(2000)])
    mal, ben = cues(True), cues(False)
    diff = mal.mean(0) - ben.mean(0)
    k = CUE_NAMES.index('calcification')
    assert diff[k] > 0.3                                       # sigmoid(1.6 * (+-1 + z)): means ~0.74 vs ~0.26
    assert np.abs(np.delete(diff, k)).max() < 0.03             # the others: the same class-neutral draw


def test_bad_arguments_are_refused(tool, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(['--out-dir', 'x', '--cues', 'spiculatoin'])
    assert "unknown cue(s) ['spiculatoin']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.parse_args(['--out-dir', 'x', '--sizes', '4'])
    with pytest.raises(SystemExit):
        tool.parse_args(['--out-dir', 'x', '--train', '5'])


def test_tiny_run_writes_table_json_and_png(tool, tmp_path):
    res = tool.main(['--out-dir', str(tmp_path), '--cues', 'all', 'orientation', '--sizes', '16', '--train', '24',
                     '--test', '20', '--iters', '2'])
    assert [(r['cue'], r['size']) for r in res['rows']] == [('all', 16), ('orientation', 16)]
    assert all(0 <= r['auc'] <= 1 for r in res['rows'])
    saved = json.load(open(tmp_path / 'cue_visibility.json'))
    assert saved['rows'] == res['rows'] and saved['settings']['separation'] == 2.0
    md = (tmp_path / 'cue_visibility.md').read_text()
    assert '| orientation | 0.921 |' in md
    assert (tmp_path / 'cue_visibility.png').stat().st_size > 1000
