"""The one table of stage-2 methods: shipped config stem, title and training sets."""
METHODS = {
    'mean_teacher': dict(config='mean_teacher_bus', title='Mean teacher (semi-supervised)',
                         train_sets='A-basic (labelled) + A-extended (unlabelled)'),
    'fixmatch': dict(config='fixmatch_bus', title='FixMatch (semi-supervised)',
                     train_sets='A-basic (labelled) + A-extended (unlabelled)'),
    'supervised_basic': dict(config='supervised_basic_bus', title='Supervised, basic train',
                             train_sets='A-basic'),
    'supervised_all': dict(config='supervised_all_bus', title='Supervised, basic + extended train',
                           train_sets='A-basic + A-extended (labelled)'),
}
DETECTOR = dict(config='faster_rcnn_vgg16_bus', title='Faster R-CNN VGG16')


def method_info(name: str) -> dict:
    if name not in METHODS:
        raise ValueError(f'unknown method {name!r}; choose from {sorted(METHODS)}')
    return METHODS[name]


def title(name: str) -> str:
    return METHODS.get(name, {}).get('title', name)


def detector_key(name: str) -> str:
    """File-name stem of a study's detector (its folder, config, rows): ``detector`` for the main one,
    ``det-<name>`` for the others."""
    return 'detector' if name == 'detector' else f'det-{name}'
