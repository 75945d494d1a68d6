"""The operating points of a bundle in plain words, for the page: what each
one means, the label there, and the one-line headline of a result."""
from typing import Dict, List

from mmbus.classes import CLASSES
from mmbus.evaluation.operating_points import parse_point_name


def _pct(x: float) -> str:
    return f'{x * 100:.0f} %' if float(x * 100).is_integer() else \
        f'{x * 100:g} %'


def describe_operating_point(name: str, threshold: float) -> Dict:
    """Short title and meaning of one operating point of a bundle."""
    kind, target = parse_point_name(name)
    sens, spec = (target, None) if kind == 'sensitivity' else (None, target)
    if sens is not None:
        title = f'{_pct(sens)}-sensitivity threshold'
        meaning = (f'the highest probability cut-off that still called at '
                   f'least {_pct(sens)} of the malignant nodules of the '
                   'calibration set malignant')
    elif spec is not None:
        title = f'{_pct(spec)}-specificity threshold'
        meaning = (f'the lowest probability cut-off that called at least '
                   f'{_pct(spec)} of the benign nodules of the calibration '
                   'set benign')
    elif name == 'youden':
        title = 'Youden threshold'
        meaning = ('the cut-off that maximised sensitivity + specificity on '
                   'the calibration set')
    elif name == 'threshold_0.5':
        title = '0.5 threshold'
        meaning = 'the plain 50 % cut-off (not fitted to data)'
    else:
        title = f'{name} threshold'
        meaning = 'an operating point of the bundle\'s calibration file'
    return dict(name=name, threshold=float(threshold), title=title,
                meaning=meaning, sensitivity_target=sens)


def operating_points(prob: float, thresholds: Dict[str, float],
                     classes=CLASSES) -> List[Dict]:
    """One entry per operating point: its description, the label there
    (malignant iff ``prob >= threshold``, as the bundle decides) and a
    sentence."""
    out = []
    for name, t in thresholds.items():
        d = describe_operating_point(name, t)
        above = prob >= t
        d.update(label=classes[int(above)], above=bool(above),
                 text=(f'{"at or above" if above else "below"} the '
                       f'{d["title"]} ({t:.3f})'))
        out.append(d)
    return out


def headline(prob: float, ops: List[Dict]) -> Dict:
    """The label text in plain words.

    Uses the sensitivity operating points when the bundle has any (the ones
    a reader triages with), otherwise all fitted ones (the plain 0.5 only
    when nothing else exists). When the probability reaches one or more of
    them, the one with the highest threshold it reaches is named: "biopsy
    range"; otherwise the lowest threshold is named: even the most
    sensitive cut-off calls the nodule benign.
    """
    pool = [o for o in ops if o['sensitivity_target'] is not None] or \
        [o for o in ops if o['name'] != 'threshold_0.5'] or ops
    reached = [o for o in pool if o['above']]
    if reached:
        o = max(reached, key=lambda o: o['threshold'])
        return dict(category='above', operating_point=o['name'],
                    text=f'At or above the {o["title"]} '
                         f'({o["threshold"]:.3f}): biopsy range')
    o = min(pool, key=lambda o: o['threshold'])
    return dict(category='below', operating_point=o['name'],
                text=f'Below the {o["title"]} ({o["threshold"]:.3f})')
