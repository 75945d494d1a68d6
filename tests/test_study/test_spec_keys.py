"""A spec key the engine does not read is refused, naming the nearest known ones; every shipped spec still
builds; a toy run never replaces the folder of a user's data."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

from mmbus.study.engine import Study
from mmbus.study.spec import DATA_KEYS, SPEC_KEYS, TOY_KEYS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SPECS = sorted(glob.glob(osp.join(REPO, 'configs', 'studies', '*.py')))
USER_ROOT = {'dataset', 'coco', 'crops'}


def _spec(name, **opts):
    spec = Config.fromfile(osp.join(REPO, 'configs', 'studies', f'{name}.py'))
    spec.merge_from_dict(opts, allow_list_keys=True)
    return spec


@pytest.mark.parametrize('schedule', [None, 'toy'])
@pytest.mark.parametrize('path', SPECS, ids=lambda p: osp.basename(p))
def test_every_shipped_spec_loads(path, schedule, tmp_path):
    spec = Config.fromfile(path)
    if spec.data['type'] in USER_ROOT:
        spec.merge_from_dict({'data.root': str(tmp_path / 'data')})
    if schedule:
        spec.schedule = schedule
    study = Study(spec, str(tmp_path / 'work'))  # builds the plan; runs no stage
    assert study.plan and not list(tmp_path.glob('work/*'))


@pytest.mark.parametrize('opts, message', [
    ({'export_teachr': False}, r"unknown spec key 'export_teachr'; did you mean 'export_teacher'"),
    ({'data.formt': 'generic', 'data.root': '/data/x'},
     r"unknown data key 'formt' for data.type='dataset'; did you mean 'format'"),
    ({'data.images': dict(a=3), 'data.root': '/data/x'}, r"unknown data key 'images' for data.type='dataset'"),
    ({'data.type': 'cocoo'}, r"unknown data.type 'cocoo'; did you mean 'coco'"),
    ({'toy.dta': {}}, r"unknown toy key 'dta'; did you mean 'data'"),
    ({'grid': dict(seeds=[0, 1])}, r"unknown grid key 'seeds'; did you mean 'seed'"),
    ({'grid': dict(labeled_share=[0.1])}, r"unknown grid key 'labeled_share'; did you mean 'labelled_share'"),
    ({'grid': [dict(seed=[0]), dict(seed=[1], **{'model.consistency_weigth': [1.0]})]},
     r"unknown grid key 'model.consistency_weigth'; did you mean 'model.consistency_weight'"),
])
def test_misspelled_keys_are_refused(opts, message, tmp_path):
    spec = _spec('main_job_dataset', **{'data.root': '/data/x'})
    if 'grid' in opts:
        spec.methods = ['mean_teacher']
    spec.merge_from_dict(opts, allow_list_keys=True)
    with pytest.raises(ValueError, match=message):
        Study(spec, str(tmp_path))


def test_grid_keys(tmp_path):
    # a dotted key of every method's config is a grid key; one only the mean teacher has needs its entry to
    # name the mean teacher alone
    spec = _spec('busbra_stage2', **{'data.root': '/data/x'})
    spec.grid = [dict(seed=[0], labelled_share=[0.1], methods=['mean_teacher'], **{'model.consistency_weight': [1.]}),
                 dict(seed=[1], **{'optim_wrapper.optimizer.lr': [0.01]})]
    assert len(Study(spec, str(tmp_path)).plan) == 2
    spec.grid = dict(seed=[0], **{'model.consistency_weight': [1.]})
    with pytest.raises(ValueError, match=r"not in the config of supervised_basic, supervised_all"):
        Study(spec, str(tmp_path))
    # helper variables of a spec file are not keys
    spec = _spec('main_job_synthetic', _my_helper=3)
    Study(spec, str(tmp_path))


def test_toy_never_replaces_a_users_data_root(tmp_path):
    # main_job_dataset inherits the synthetic main job's toy data (root {work_dir}/data, images): a toy run
    # reads the user's root; the toy's ratios still apply
    spec = _spec('main_job_dataset', **{'data.root': str(tmp_path / 'mine'), 'schedule': 'toy'})
    study = Study(spec, str(tmp_path / 'w'))
    assert study.data['root'] == str(tmp_path / 'mine') and 'images' not in study.data
    assert study.data['ratios'] == spec.toy.data.ratios
    study.build()
    assert study.layout.sets['internal'].images == str(tmp_path / 'mine')
    # without a root the error asks for one (not for a folder the user never named)
    with pytest.raises(ValueError, match='data.root is required'):
        Study(_spec('main_job_dataset', schedule='toy'), str(tmp_path / 'w2')).build()
    # generated data is still shrunk and moved into the work dir
    study = Study(_spec('main_job_synthetic', schedule='toy'), str(tmp_path / 'w3'))
    assert study.data['root'] == '{work_dir}/data' and study.data['images'] == spec.toy.data.images


def test_key_tables_match_the_readme():
    readme = open(osp.join(REPO, 'configs', 'studies', 'README.md')).read()
    table = readme.split('| key | meaning |', 1)[1].split('\n\n', 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r'^\| (`[^|]*`) \| (.*) \|$', table, re.M)}
    assert {k for cell in rows for k in re.findall(r'`(\w+)`', cell)} == set(SPEC_KEYS)
    for kind, keys in DATA_KEYS.items():
        part = rows['`data`'].split(f"type='{kind}'")[1].split("type='")[0]
        for k in keys:
            assert k == 'type' or re.search(rf'`{k}[`=]', part), (kind, k)
    for k in TOY_KEYS:
        assert f'`{k}`' in rows['`toy`'], k


def test_format_options_reach_the_converter(tmp_path):
    """A generic dataset in another layout (data.format_options) is converted with the converter's own flags;
    an option the format does not read is refused, naming the key."""
    spec = _spec('main_job_dataset', **{'data.root': str(tmp_path / 'mine'), 'data.format': 'generic',
                                        'data.format_options': dict(images='scans', mask_pattern='{stem}-roi.png'),
                                        'data.external_root': str(tmp_path / 'b'), 'data.external_format': 'busbra',
                                        'data.external_format_options': dict(masks='ROI')})
    study = Study(spec, str(tmp_path / 'w'))
    study.build()
    stages = {st.name: list(st.cmd) for st in study.layout.stages if st.name.startswith('convert_')}
    internal, external = stages['convert_internal'], stages['convert_external']
    assert internal[internal.index('--format') + 1] == 'generic'
    assert internal[internal.index('--images') + 1] == 'scans'
    assert internal[internal.index('--mask-pattern') + 1] == '{stem}-roi.png'
    assert external[external.index('--masks') + 1] == 'ROI' and '--images' not in external
    spec.data['format_options'] = dict(boxes='b.csv')
    with pytest.raises(ValueError, match=r"^data\.format_options: 'boxes' does not apply to format 'generic' "
                                         r"\(it reads: images, masks, labels, mask_pattern\)$"):
        Study(spec, str(tmp_path / 'w2')).build()
    spec.data['format_options'] = None
    spec.data['external_format'] = 'bsui'
    with pytest.raises(ValueError, match=r"^data\.external_format: unknown format 'bsui' \(one of busi, busbra, "
                                         r"generic, boxes-csv\)$"):
        Study(spec, str(tmp_path / 'w3')).build()
