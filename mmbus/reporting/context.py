"""What a study report reads besides its result rows: ``report_context.json`` of the work dir, and the rest of
the contract between the study engine (:mod:`mmbus.study`, which writes a work dir) and its reports (which read
it, and never the engine): the work dir's file names, image sets and how a spec's paths resolve.

A study writes the context when it starts in a work dir without one, and the study that draws a report writes it
again (``Study.write_report_context`` in :mod:`mmbus.study.engine`): the study's name, schedule, data, methods in
order, test sets, image sets, report settings and the folder it ran in. Reports read it through
:class:`ReportContext`, with the rows and the files they name, and nothing else.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Optional

from .curves import run_curves
from .results import load_json, load_predictions

#: the checkout a spec's relative paths and the shipped configs and tools are found in
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONTEXT_FILE = 'report_context.json'
SPEC_FILE = 'study_spec.py'
#: the stages' keys, status, wall times and commands (:mod:`mmbus.study.stages`)
STATE_FILE = 'study_state.json'


def resolve_path(path: str, work_dir: str) -> str:
    """A spec's path: ``{work_dir}`` filled in, a relative one under the checkout."""
    path = str(path).replace('{work_dir}', work_dir)
    return osp.abspath(path if osp.isabs(path) else osp.join(REPO_ROOT, path))


@dataclass
class ImageSet:
    """Images of one hospital and the folder whose ``annotations/<split>.json`` describe them."""
    images: str
    ann_root: str
    title: str

    def ann(self, split: str) -> str:
        return osp.join(self.ann_root, 'annotations', f'{split}.json')


class ReportContext:
    """What a report reads besides the rows, all from the work dir: ``context`` is ``report_context.json``
    (``mmbus.study.engine.Study.report_context``); ``report`` replaces its ``report`` settings. Paths the context
    holds under the work dir the study ran in are read under ``work_dir``, so a moved or copied work dir still
    reports."""

    def __init__(self, work_dir: str, context: dict, report: Optional[dict] = None):
        self.work_dir = osp.abspath(work_dir)
        #: where the study ran: its commands (study_state.json) name this folder
        self.origin = osp.abspath(context.get('work_dir') or self.work_dir)
        self.name = context.get('name', 'study')
        self.schedule = context.get('schedule', '')
        self.data = dict(context.get('data') or {})
        self.methods = list(context.get('methods') or [])
        self.test_sets = [dict(t) for t in context.get('test_sets') or []]
        self.sets = {n: ImageSet(self.here(s['images']), self.here(s['ann_root']), s['title'])
                     for n, s in (context.get('sets') or {}).items()}
        self.train_crops = context.get('train_crops', 'main')
        self.export_teacher = bool(context.get('export_teacher'))
        self.report = dict(context.get('report') or {} if report is None else report)
        self._predictions: Dict[tuple, tuple] = {}

    @classmethod
    def load(cls, work_dir: str, report: Optional[dict] = None) -> 'ReportContext':
        """The context of a finished work dir; ``report`` replaces its ``report`` settings (a report redrawn
        with other targets or grid points)."""
        work_dir = osp.abspath(work_dir)
        context = load_json(osp.join(work_dir, CONTEXT_FILE))
        if context is None:
            raise FileNotFoundError(
                f'{work_dir} holds no {CONTEXT_FILE} (a study writes it when it starts): not a study work dir; '
                f'python tools/run_study.py SPEC --work-dir {work_dir} --report-only writes it from the spec')
        return cls(work_dir, context, report)

    @classmethod
    def of(cls, source) -> 'ReportContext':
        """The context of a live study (``mmbus.study.engine.Study``: what its report stage writes), else
        ``source`` itself."""
        if not hasattr(source, 'report_context'):
            return source
        return cls(source.work_dir, source.report_context())

    def here(self, path: str) -> str:
        """``path`` moved from the work dir the study ran in to this one."""
        if path == self.origin or path.startswith(self.origin + '/'):
            return self.work_dir + path[len(self.origin):]
        return path

    def p(self, *parts) -> str:
        return osp.join(self.work_dir, *parts)

    def rel(self, path: str) -> str:
        return osp.relpath(path, self.work_dir)

    def predictions(self, row: dict):
        """(scores, labels, image ids) of a result row's test, misses included; read once per report
        (tables, ROC curves and paired tests all use them)."""
        rule = row.get('missed_rule', 'wrong')
        key = (row['predictions'], row['crops'], row['missed'], rule)
        if key not in self._predictions:
            self._predictions[key] = load_predictions(*(self.p(k) for k in key[:3]), missed_rule=rule)
        return self._predictions[key]

    def roc(self, row: dict) -> Optional[tuple]:
        """(scores, labels, metrics) of a row's test for a ROC panel; None where the test lacks a class."""
        s, y, _ = self.predictions(row)
        return (s, y, row['metrics']) if (y == 1).any() and (y == 0).any() else None

    def curves(self, row: dict) -> Optional[dict]:
        """The validation curves of a row's run (``run_dir``) with its monitored metrics (``monitors``):
        ``dict(curves, monitor, raw)``; None for a row that names neither."""
        mon = row.get('monitors')
        if not row.get('run_dir') or not mon:
            return None
        monitor = mon['monitor']
        return dict(curves=run_curves(self.p(row['run_dir']), monitor, mon.get('skip', 0)), monitor=monitor,
                    raw=mon.get('raw', monitor))
