"""``MODEL_CARD.md`` of a recogniser bundle: what the model is, its test
figures with their confidence intervals, its calibration and operating
points, its intended use and known limits (:func:`render_model_card`, from
the content of ``bundle.json``, the metrics of ``tools/test.py
--out-metrics`` and free text given at export)."""
import json
from typing import List, Optional

from mmbus.evaluation.operating_points import parse_point_name
from mmbus.utils.markdown import md_table
from .bundle_format import _finite

_NP = '_not provided_'
_METRIC_ROWS = (('auc', 'ROC AUC'), ('sensitivity', 'Sensitivity'),
                ('specificity', 'Specificity'), ('accuracy', 'Accuracy'))


def _metric_prefixes(metrics: dict) -> List[str]:
    """Prefixes of the BinaryDiagnosticMetric keys (``teacher/auc`` ->
    ``teacher``; a bare ``auc`` -> ``''``), the teacher first."""
    found = []
    for k in metrics:
        if k == 'auc' or k.endswith('/auc'):
            found.append(k[:-len('auc')].rstrip('/'))
    order = {'teacher': 0, 'diag': 1}
    return sorted(found, key=lambda p: (order.get(p, 2), p))


def _fmt(v, digits=3) -> str:
    return f'{v:.{digits}f}' if _finite(v) else 'n/a'


def _metrics_section(metrics) -> List[str]:
    if not metrics:
        return [f'Test figures: {_NP}.']
    prefixes = _metric_prefixes(metrics)
    if not prefixes:
        return [f'Test figures: {_NP} (no `<prefix>/auc` key in the metrics '
                'given).']
    lines = ['Figures from `tools/test.py --out-metrics` '
             '(BinaryDiagnosticMetric: DeLong CI for the AUC, Wilson CIs for '
             'the proportions, at the metric\'s `ci_level`, 0.95 by '
             'default).', '']
    for p in prefixes:
        key = (lambda name: f'{p}/{name}') if p else (lambda name: name)
        rows = []
        for name, label in _METRIC_ROWS:
            if key(name) in metrics:
                lo, hi = metrics.get(key(f'{name}_ci_low')), \
                    metrics.get(key(f'{name}_ci_high'))
                ci = f'[{_fmt(lo)}, {_fmt(hi)}]' if lo is not None else 'n/a'
                rows.append([label, _fmt(metrics[key(name)]), ci])
        lines += [f'**{p or "model"}**', '',
                  md_table(['figure', 'value', 'CI'], rows)]
        extra = []
        if key('threshold') in metrics:
            extra.append(f'decision threshold {_fmt(metrics[key("threshold")], 4)}')
        for name in ('num_samples', 'num_missed', 'tp', 'fn', 'tn', 'fp'):
            if _finite(metrics.get(key(name))):
                extra.append(f'{name} {int(metrics[key(name)])}')
        if extra:
            lines += ['', '; '.join(extra) + '.']
        lines.append('')
    return lines


_OP_MEANING = {
    'youden': 'maximises sensitivity + specificity - 1 on the fitting set',
}


def _op_meaning(name: str) -> str:
    if name in _OP_MEANING:
        return _OP_MEANING[name]
    kind, target = parse_point_name(name)
    if kind == 'sensitivity':
        return f'the highest threshold keeping sensitivity >= {name[len(kind) + 1:]} on the fitting set'
    if kind == 'specificity':
        return f'the lowest threshold reaching specificity >= {name[len(kind) + 1:]} on the fitting set'
    return 'see the calibration tool'


def _metric(metrics: Optional[dict], name: str):
    """``<prefix>/<name>`` of the first BinaryDiagnosticMetric prefix (the teacher first), else None."""
    for p in _metric_prefixes(metrics or {}):
        v = (metrics or {}).get(f'{p}/{name}' if p else name)
        if v is not None:
            return v
    return None


def _ci_cell(metrics: Optional[dict], name: str) -> str:
    v = _metric(metrics, name)
    if not _finite(v):
        return 'n/a'
    lo, hi = _metric(metrics, f'{name}_ci_low'), _metric(metrics, f'{name}_ci_high')
    return f'{_fmt(v, 2)} [{_fmt(lo, 2)}, {_fmt(hi, 2)}]' if _finite(lo) else _fmt(v, 2)


def _test_calibration(metrics: Optional[dict]) -> str:
    """'on the test crops: ECE 0.16 -> 0.07, Brier 0.22 -> 0.18' from the metric's raw and calibrated keys."""
    ece, brier = _metric(metrics, 'ece'), _metric(metrics, 'brier')
    if not _finite(ece):
        return ''
    raw_e, raw_b = _metric(metrics, 'ece_raw'), _metric(metrics, 'brier_raw')
    arrow = (lambda raw, cal: f'{_fmt(raw, 3)} -> {_fmt(cal, 3)}' if _finite(raw) else _fmt(cal, 3))
    return f'on the test crops, before -> after the temperature: ECE {arrow(raw_e, ece)}, Brier {arrow(raw_b, brier)}'


def _find_ece(cal: dict) -> dict:
    found = {}
    for where in (cal, cal.get('fitted_on') or {}):
        if isinstance(where, dict):
            for k, v in where.items():
                if 'ece' in str(k).lower() and _finite(v):
                    found[k] = v
    return found


def _info(card_info, *names):
    for n in names:
        if card_info and card_info.get(n) not in (None, ''):
            return card_info[n]
    return None


def render_model_card(info: dict, metrics: Optional[dict] = None,
                      card_info: Optional[dict] = None) -> str:
    """``MODEL_CARD.md`` text from ``bundle.json`` content, the test metrics
    and ``card_info``. Every section says "not provided" for missing input.

    ``card_info`` keys (all optional): ``name``, ``version``, ``description``,
    ``training_data`` (text), ``num_labelled``, ``num_unlabelled``,
    ``split`` (text), ``test_data`` (text), ``known_limits`` (list or text),
    ``contact``, ``license``.
    """
    card_info = card_info or {}
    inp, arch = info['input'], info.get('architecture') or {}
    norm = info.get('normalisation') or {}
    name = _info(card_info, 'name') or 'mmbus malignancy recogniser'
    lines = [f'# Model card: {name}', '']
    if _info(card_info, 'version'):
        lines += [f'Version: {card_info["version"]}', '']
    if _info(card_info, 'description'):
        lines += [str(card_info['description']), '']

    lines += ['## Model', '',
              f'- Architecture: {arch.get("classifier", "ImageClassifier")} '
              f'with backbone {arch.get("backbone") or "n/a"} '
              f'{arch.get("backbone_args") or ""} and head '
              f'{arch.get("head") or "n/a"} ({arch.get("parameters", "n/a")} '
              'parameters); weights: '
              f'{info["source"].get("exported_part", "n/a")}.',
              f'- Source: config `{info["source"]["config"]}`, checkpoint '
              f'`{info["source"]["checkpoint"]}` (sha256 '
              f'`{info["source"]["checkpoint_sha256"][:16]}...`).',
              f'- File: `{info["model_file"]}`, ONNX opset {info["opset"]}, '
              f'{info["exporter"]}.',
              f'- Input: float32 N x {inp["channels"]} x {inp["height"]} x '
              f'{inp["width"]}, raw pixel values 0-255 '
              f'({"grey" if inp["colour"].startswith("grey") else "BGR"}); '
              'the normalisation '
              f'(mean {norm.get("mean")}, std {norm.get("std")}) is inside '
              'the graph.',
              f'- Resize (done by the caller, `BundleClassifier` does it): '
              f'{_resize_text(inp["resize"])}.',
              f'- Output: `probs` N x 2 (softmax; column 1 = '
              f'{info["class_names"][1]}), `logits` N x 2.',
              f'- Export parity (PyTorch vs onnxruntime, {info["parity"]["inputs"]}): '
              f'max |diff| = {info["parity"]["max_abs_diff"]:.3g}.', '']

    lines += ['## Training data and split', '']
    n_lab = _info(card_info, 'num_labelled', 'labelled')
    n_unl = _info(card_info, 'num_unlabelled', 'unlabelled')
    lines += [f'- Training data: {_info(card_info, "training_data") or _NP}.',
              f'- Labelled crops: {n_lab if n_lab is not None else _NP}; '
              f'unlabelled crops: {n_unl if n_unl is not None else _NP}.',
              f'- Split: {_info(card_info, "split") or _NP}.',
              f'- Test data: {_info(card_info, "test_data") or _NP}.', '']

    lines += ['## Test figures', ''] + _metrics_section(metrics) + ['']

    cal = info.get('calibration')
    lines += ['## Calibration', '']
    if cal:
        lines.append(f'- Temperature T = {_fmt(cal["temperature"], 4)}: the '
                     'calibrated malignancy probability is '
                     'sigmoid((logit_malignant - logit_benign) / T).')
        ece = _find_ece(cal)
        test = _test_calibration(metrics)
        lines.append('- ECE: ' + (', '.join(f'{k} = {_fmt(v, 4)}'
                                            for k, v in ece.items())
                                  if ece else test or _NP) + '.')
        fitted = cal.get('fitted_on')
        lines.append('- Fitted on: ' + (json.dumps(fitted, sort_keys=True)
                                        if fitted else _NP) + '.')
    else:
        lines.append(f'Calibration: {_NP} (probabilities are the raw '
                     'softmax, T = 1).')
    lines.append('')

    lines += ['## Operating points', '']
    thr = (cal or {}).get('thresholds') or {}
    if thr:
        lines += ['A nodule is called malignant when the calibrated '
                  'probability is >= the threshold. Test figures: the '
                  'thresholds applied unchanged to the test crops (95 % '
                  'Wilson CIs).', '',
                  md_table(['operating point', 'threshold', 'meaning',
                            'test sensitivity', 'test specificity',
                            'test PPV', 'test NPV'],
                           [[k, _fmt(v, 4), _op_meaning(k)] +
                            [_ci_cell(metrics, f'{k}/{f}') for f in
                             ('sensitivity', 'specificity', 'ppv', 'npv')]
                            for k, v in thr.items()])]
    else:
        lines.append(f'Operating points: {_NP}; `BundleClassifier` labels at '
                     'probability 0.5 only.')
    lines.append('')

    lines += ['## Intended use', '',
              'Research decision support: a second opinion on the '
              'benign / malignant character of a breast-ultrasound nodule '
              'crop, to be reviewed by a qualified reader. It is not a '
              'diagnostic device, is not cleared or approved by any '
              'regulator, and must not be the sole basis of a clinical '
              'decision.', '']

    limits = card_info.get('known_limits')
    if isinstance(limits, str):
        limits = [limits]
    lines += ['## Known limits', '',
              '- Input is a nodule crop (detector box plus margin), not a '
              'whole image; crops cut differently from training shift the '
              'figures.',
              '- Figures and thresholds hold for data like the test / '
              'calibration sets; other scanners, hospitals or populations '
              'need their own validation and calibration.',
              '- Thresholds chosen on a small set carry the uncertainty of '
              'that set (see the CIs).']
    lines += [f'- {x}' for x in (limits or [])]
    if card_info.get('contact') or card_info.get('license'):
        lines += ['', '## Contact and licence', '']
        for k in ('contact', 'license'):
            if card_info.get(k):
                lines.append(f'- {k}: {card_info[k]}')
    return '\n'.join(lines).rstrip() + '\n'


def _resize_text(rs: dict) -> str:
    if rs['mode'] == 'letterbox':
        return (f'letterbox to {rs["width"]} x {rs["height"]} (aspect ratio '
                f'kept, centred, padding value {rs["pad_val"]:g}), '
                f'{rs["interpolation"]}')
    return f'stretch to {rs["width"]} x {rs["height"]}, {rs["interpolation"]}'
