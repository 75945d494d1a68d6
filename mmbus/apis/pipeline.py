"""Orchestration of the whole two-stage study as one resumable command.

Every stage is the command-line tool a user would run alone (synthetic
generator, converter, ``tools/train.py``, ``tools/test.py``,
``tools/extract_crops.py`` ...), started as a subprocess with the same
Python; this module only decides *what* to run, *whether* it has to run, and
keeps the logs.

Skipping and resuming (``<work_dir>/pipeline_state.json``):

* a stage's **key** is a SHA-256 over its command line and the fingerprints
  of its inputs (config files and small files by content; directories and
  large files by relative path + size + mtime);
* a stage is **skipped** when the recorded key is the same, the recorded run
  finished with exit status 0 and every declared output still exists;
* a stage that started but did not finish (interrupt, crash) is **rerun**;
  a training stage whose work dir holds ``last_checkpoint`` from a run with
  the same key gets ``--resume`` so it continues from that checkpoint;
  with a different key the old training work dir is cleared first.

Stage logs go to ``<work_dir>/logs/<NN>_<stage>.log``; on failure the last
lines are printed and the pipeline stops with the log's path.
"""
import hashlib
import json
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from .crop_extraction import dump_json_atomic

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STATE_FILE = 'pipeline_state.json'
#: files above this size are fingerprinted by size + mtime, not content.
_HASH_LIMIT = 32 * 1024 * 1024


# ----------------------------------------------------------------------------
# fingerprints and state
# ----------------------------------------------------------------------------
def fingerprint(path: str) -> str:
    """SHA-256 of a file's content (size + mtime for files over 32 MiB, e.g.
    checkpoints); for a directory a hash over (relative path, file
    fingerprint) of every file; 'missing' when absent."""
    if osp.isfile(path):
        st = os.stat(path)
        if st.st_size > _HASH_LIMIT:
            return f'stat:{st.st_size}:{st.st_mtime_ns}'
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
        return 'sha256:' + h.hexdigest()
    if osp.isdir(path):
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            # a converter writes <root>/annotations/ into the image folder it
            # reads; that output must not count as a change of the input
            dirs[:] = sorted(d for d in dirs
                             if not (root == path and d == 'annotations'))
            for name in sorted(files):
                p = osp.join(root, name)
                # content, not mtime: regenerating identical data must not
                # cascade into retraining everything downstream
                h.update(f'{osp.relpath(p, path)}:{fingerprint(p)}\n'
                         .encode())
        return 'dir:' + h.hexdigest()
    return 'missing'


@dataclass
class Stage:
    """One step of the pipeline.

    Attributes:
        name: short identifier (``train_detector``).
        cmd: argv of the tool (``sys.executable`` first) or ``None`` when
            ``func`` runs in-process; may be a callable returning the argv,
            evaluated just before the stage (e.g. to name the checkpoint an
            earlier stage wrote).
        inputs: files / directories whose change reruns the stage (or a
            callable returning them).
        outputs: paths that must exist after success.
        work_dir: for training stages: the mmengine work dir (resume source).
        func: in-process callable for stages that are not tools.
        desc: one line for the progress display.
    """
    name: str
    cmd: object = None
    inputs: object = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    work_dir: Optional[str] = None
    func: Optional[Callable[[], None]] = None
    desc: str = ''
    extra_key: str = ''

    def resolve(self):
        """Evaluate lazy ``cmd`` / ``inputs`` (after earlier stages ran)."""
        if callable(self.cmd):
            self.cmd = self.cmd()
        if callable(self.inputs):
            self.inputs = self.inputs()

    def key(self) -> str:
        self.resolve()
        h = hashlib.sha256()
        h.update(json.dumps(self.cmd or self.name).encode())
        h.update(self.extra_key.encode())
        for p in self.inputs:
            h.update(f'{p}={fingerprint(p)}\n'.encode())
        return h.hexdigest()


class PipelineState:
    """``pipeline_state.json``: per stage its key, status and timing."""

    def __init__(self, path: str):
        self.path = path
        self.data: Dict[str, dict] = {}
        if osp.isfile(path):
            try:
                with open(path) as f:
                    self.data = json.load(f).get('stages', {})
            except (json.JSONDecodeError, AttributeError):
                print(f'[pipeline] warning: {path} is corrupt; every stage '
                      'will run again')
                self.data = {}

    def save(self):
        dump_json_atomic(dict(stages=self.data), self.path, indent=1)

    def get(self, name: str) -> dict:
        return self.data.get(name, {})

    def set(self, name: str, **kw):
        self.data.setdefault(name, {}).update(kw)
        self.save()


def _tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


class StageFailed(RuntimeError):
    pass


def run_stages(stages: Sequence[Stage], work_dir: str,
               force: Sequence[str] = (), env: Optional[dict] = None,
               quiet: bool = False) -> List[dict]:
    """Run (or skip) the stages in order.

    Returns one record per stage: ``name``, ``status`` ('skipped' | 'ran'),
    ``wall_s``.  Raises :class:`StageFailed` naming the log on failure.
    """
    os.makedirs(osp.join(work_dir, 'logs'), exist_ok=True)
    state = PipelineState(osp.join(work_dir, STATE_FILE))
    n = len(stages)
    records = []
    t_all = time.time()
    for i, st in enumerate(stages, 1):
        key = st.key()
        prev = state.get(st.name)
        log = osp.join(work_dir, 'logs', f'{i:02d}_{st.name}.log')
        head = f'[pipeline] stage {i}/{n} {st.name}'
        done = (prev.get('key') == key and prev.get('status') == 'done'
                and all(osp.exists(p) for p in st.outputs)
                and st.name not in force)
        if done:
            print(f'{head}: up to date, skipped', flush=True)
            records.append(dict(name=st.name, status='skipped',
                                wall_s=prev.get('wall_s')))
            continue
        cmd = list(st.cmd) if st.cmd else None
        if st.work_dir is not None and cmd is not None:
            ckpt_marker = osp.join(st.work_dir, 'last_checkpoint')
            if prev.get('key') == key and osp.isfile(ckpt_marker):
                cmd.append('--resume')  # same inputs: continue training
                print(f'{head}: resuming from {_read(ckpt_marker)}',
                      flush=True)
            elif osp.isdir(st.work_dir):
                shutil.rmtree(st.work_dir)  # stale run with other inputs
        print(f"{head}: {st.desc or st.name} ... (log: {log})", flush=True)
        if cmd is not None:
            print('    $ ' + ' '.join(shlex.quote(c) for c in cmd),
                  flush=True)
        state.set(st.name, key=key, status='running', started=time.time(),
                  cmd=cmd)
        t0 = time.time()
        if cmd is not None:
            with open(log, 'w') as f:
                rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT,
                                     cwd=REPO_ROOT, env=env)
        else:
            rc = _run_func(st.func, log)
        wall = time.time() - t0
        missing = [p for p in st.outputs if not osp.exists(p)]
        if rc != 0 or missing:
            state.set(st.name, status='failed', rc=rc, wall_s=wall)
            why = (f'exit status {rc}' if rc != 0 else
                   f'outputs missing: {missing}')
            print(f'{head}: FAILED ({why}) after {wall:.1f} s; last lines of '
                  f'{log}:\n{_tail(log)}', flush=True)
            raise StageFailed(f'stage {st.name} failed ({why}); see {log}')
        state.set(st.name, status='done', rc=0, wall_s=wall,
                  finished=time.time(),
                  outputs={p: fingerprint(p) for p in st.outputs
                           if osp.isfile(p)})
        print(f'{head}: done in {wall:.1f} s (total '
              f'{time.time() - t_all:.0f} s)', flush=True)
        records.append(dict(name=st.name, status='ran', wall_s=wall))
    return records


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _run_func(func, log: str) -> int:
    """Run an in-process stage with stdout/stderr captured to the log."""
    import contextlib
    import traceback
    with open(log, 'w') as f, contextlib.redirect_stdout(f), \
            contextlib.redirect_stderr(f):
        try:
            func()
            return 0
        except Exception:  # reported through the log tail
            traceback.print_exc()
            return 1


def checkpoint_of(work_dir: str, prefer_best: bool = False) -> str:
    """The checkpoint named by mmengine's ``last_checkpoint`` marker, or with
    ``prefer_best`` the ``best_*.pth`` that CheckpointHook(save_best=...)
    kept (the paper keeps the best model on validation)."""
    if prefer_best and osp.isdir(work_dir):
        best = sorted(f for f in os.listdir(work_dir)
                      if f.startswith('best_') and f.endswith('.pth'))
        if best:
            return osp.join(work_dir, best[-1])
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'no checkpoint in {work_dir} (missing '
                                f'{marker}); did training finish?')
    path = _read(marker)
    if not osp.isabs(path):
        path = osp.join(REPO_ROOT, path)
    return path


# ----------------------------------------------------------------------------
# derived configs
# ----------------------------------------------------------------------------
def _walk_replace(obj, fn):
    """Apply ``fn(key, value) -> value`` to every leaf of nested dicts/lists
    (in place); returns the object."""
    if isinstance(obj, dict):
        for k in list(obj.keys()):
            v = obj[k]
            if isinstance(v, (dict, list)):
                _walk_replace(v, fn)
            else:
                obj[k] = fn(k, v)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, (dict, list)):
                _walk_replace(v, fn)
            else:
                obj[i] = fn(i, v)
    return obj


def _find_key(obj, key):
    """First value of ``key`` in nested dicts/lists (depth first)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        vals = obj.values()
    elif isinstance(obj, list):
        vals = obj
    else:
        return None
    for v in vals:
        r = _find_key(v, key)
        if r is not None:
            return r
    return None


def rebase_data_root(cfg_dict: dict, new_root: str,
                     old_root: Optional[str] = None) -> dict:
    """Point every path under the config's dataset root to ``new_root``.

    ``old_root`` defaults to the first ``data_root`` found in the train (else
    test) dataloader; every string equal to it or starting with it (e.g. a
    CocoMetric ``ann_file``) is rewritten.
    """
    if old_root is None:
        old_root = _find_key(cfg_dict.get('train_dataloader', {}),
                             'data_root') or _find_key(
                                 cfg_dict.get('test_dataloader', {}),
                                 'data_root')
    if not old_root:
        raise ValueError('config has no data_root to rebase')
    old = old_root.rstrip('/') + '/'
    new = osp.abspath(new_root).rstrip('/') + '/'

    def fn(k, v):
        if isinstance(v, str):
            if v.rstrip('/') == old.rstrip('/'):
                return new
            if v.startswith(old):
                return new + v[len(old):]
        return v

    return _walk_replace(cfg_dict, fn)


def shorten_schedule(cfg_dict: dict, iters: int) -> dict:
    """Cut an iteration-based schedule to ``iters`` iterations (toy runs):
    max/val/checkpoint intervals, scheduler ends, warm-up and ramp-up
    lengths are clipped so every component still sees a whole schedule."""
    tc = cfg_dict.setdefault('train_cfg', {})
    hooks = cfg_dict.setdefault('default_hooks', {})
    if 'Epoch' in str(tc.get('type', '')):
        # epoch-based with a fixed epoch length in the sampler: one epoch
        # of ``iters`` iterations
        tc['max_epochs'] = 1
        tc['val_interval'] = 1
        _walk_replace(cfg_dict.get('train_dataloader', {}),
                      lambda k, v: iters if k == 'epoch_length' else v)
        if 'checkpoint' in hooks:
            hooks['checkpoint']['interval'] = 1
    else:
        tc['max_iters'] = iters
        tc['val_interval'] = iters
        if 'checkpoint' in hooks:
            hooks['checkpoint']['interval'] = iters
    if 'logger' in hooks:
        hooks['logger']['interval'] = 1
    sched = cfg_dict.get('param_scheduler') or []
    for s in sched if isinstance(sched, list) else [sched]:
        for k in ('end', 'T_max'):
            if isinstance(s.get(k), int) and s[k] > iters:
                s[k] = iters
        if isinstance(s.get('begin'), int) and s['begin'] >= iters:
            s['begin'] = 0

    def fn(k, v):
        if k in ('rampup_iters', 'freeze_iters', 'warmup_iters',
                 'rampdown_iters') and isinstance(v, int) and v > iters:
            return max(1, iters // 2) if v else 0
        return v

    _walk_replace(cfg_dict, fn)
    return cfg_dict


def shrink_detector(cfg_dict: dict, scale: int = 128,
                    fc: int = 64) -> dict:
    """Toy runs only: smaller input images and RoI-head FC layers (the
    25088 x 1024 fc6 of the cpu-quick VGG16 head dominates checkpoint size
    and load time); same model type and code path."""
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _walk_resize(cfg_dict.get(key, {}), scale)
    for key in ('train_pipeline', 'test_pipeline'):
        _walk_resize(cfg_dict.get(key, []), scale)
    head = cfg_dict.get('model', {}).get('roi_head', {}).get('bbox_head')
    if isinstance(head, dict) and 'fc_out_channels' in head:
        head['fc_out_channels'] = fc
    return cfg_dict


def _walk_resize(obj, scale):
    if isinstance(obj, dict):
        if obj.get('type') in ('Resize', 'mmdet.Resize') and 'scale' in obj:
            obj['scale'] = (scale, scale)
        for v in obj.values():
            _walk_resize(v, scale)
    elif isinstance(obj, list):
        for v in obj:
            _walk_resize(v, scale)


def write_config(cfg, path: str) -> str:
    """Dump an mmengine Config atomically (the file a user can rerun)."""
    import tempfile
    os.makedirs(osp.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path), suffix='.py')
    os.close(fd)
    cfg.dump(tmp)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------
#: classifier methods of the paper's Tables 3/4: name -> config stem.
METHODS = (('mean_teacher', 'mean_teacher_bus'),
           ('supervised_basic', 'supervised_basic_bus'),
           ('supervised_all', 'supervised_all_bus'))
METHOD_TITLES = dict(mean_teacher='Mean teacher (semi-supervised)',
                     supervised_basic='Supervised, basic train',
                     supervised_all='Supervised, basic + extended train')
#: test sets of the report: name -> (crops split, title).
TEST_SETS = (('internal', 'test', 'Internal test (hospital A)'),
             ('external', 'test_external', 'External test (hospital B)'))

#: synthetic study sizes (images) and split ratios.
SIZES = dict(full=dict(hospital_a=320, hospital_b=100),
             toy=dict(hospital_a=24, hospital_b=12))
TOY_RATIOS = 'basic_train=0.25,extended_train=0.35,val=0.15,test=0.25'
TOY_ITERS = dict(detector=2, classifier=3)


@dataclass
class StudyOptions:
    """Options of ``tools/run_pipeline.py`` (see its ``--help``)."""
    data_root: Optional[str] = None
    format: str = 'synthetic'
    schedule: str = 'cpu-quick'
    work_dir: str = 'work_dirs/pipeline'
    toy: bool = False
    device: str = 'cpu'
    external_root: Optional[str] = None
    external_format: Optional[str] = None
    seed: int = 0
    margin: float = 10.
    score_thr: float = 0.05
    force: Sequence[str] = ()
    det_config: Optional[str] = None
    cls_configs: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.work_dir = osp.abspath(self.work_dir)
        if self.data_root is None:
            if self.format != 'synthetic':
                raise ValueError(f'--data-root is required for --format '
                                 f'{self.format}')
            self.data_root = (osp.join(self.work_dir, 'data') if self.toy
                              else osp.join(REPO_ROOT, 'data/bus_synthetic'))
        self.data_root = osp.abspath(self.data_root)
        if self.external_root:
            self.external_root = osp.abspath(self.external_root)


def _py(*args) -> List[str]:
    return [sys.executable] + [str(a) for a in args]


def _tool(rel: str) -> str:
    path = osp.join(REPO_ROOT, rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'pipeline tool missing: {path}')
    return path


def synthetic_tool() -> str:
    """The synthetic generator CLI (data developer's tool)."""
    return _tool('tools/dataset_converters/make_synthetic_bus.py')


def _config_path(stem: str, schedule: str) -> str:
    suffix = '_cpu_quick' if schedule == 'cpu-quick' else ''
    path = osp.join(REPO_ROOT, 'configs/mmbus', f'{stem}{suffix}.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'config not found: {path}')
    return path


def _split_ann(root: str, split: str) -> str:
    return osp.join(root, 'annotations', f'{split}.json')


class Study:
    """Builds the stage list of the paper's study for one set of options."""

    def __init__(self, opts: StudyOptions):
        self.o = opts
        w = opts.work_dir
        self.cfg_dir = osp.join(w, 'configs')
        self.crop_dir = osp.join(w, 'crops')
        self.eval_dir = osp.join(w, 'eval')
        self.report_dir = osp.join(w, 'report')
        if opts.format == 'synthetic':
            self.root_a = osp.join(opts.data_root, 'hospital_a')
            self.root_b = osp.join(opts.data_root, 'hospital_b')
        else:
            self.root_a = opts.data_root
            self.root_b = opts.external_root
        # converted annotations live in the work dir for real data (the
        # dataset folder may be read-only), beside the images for synthetic
        self.ann_a = (self.root_a if opts.format == 'synthetic' else
                      osp.join(w, 'annotations_a'))
        self.ann_b = None
        if self.root_b:
            self.ann_b = (self.root_b if opts.format == 'synthetic' else
                          osp.join(w, 'annotations_b'))
        self.det_work = osp.join(w, 'detector')
        self.cls_work = {m: osp.join(w, m) for m, _ in METHODS}

    # -- configs ------------------------------------------------------------
    @property
    def test_sets(self):
        return [t for t in TEST_SETS
                if t[0] == 'internal' or self.root_b is not None]

    def write_configs(self) -> Dict[str, str]:
        """Derived configs pointing at this study's data (and, for --toy, a
        few iterations). Returned: name -> path."""
        from mmengine.config import Config
        o, out = self.o, {}
        det_src = o.det_config or _config_path('faster_rcnn_vgg16_bus',
                                               o.schedule)
        cfg = Config.fromfile(det_src)
        d = cfg.to_dict()
        rebase_data_root(d, self.root_a)
        if self.ann_a != self.root_a:
            # real data: annotations were converted into the work dir
            def to_ann_a(k, v):
                if not isinstance(v, str):
                    return v
                v = v.replace(self.root_a.rstrip('/') + '/annotations/',
                              self.ann_a + '/annotations/')
                if k == 'ann_file' and v.startswith('annotations/'):
                    v = osp.join(self.ann_a, v)
                return v

            _walk_replace(d, to_ann_a)
        if o.toy:
            shrink_detector(d)
            shorten_schedule(d, TOY_ITERS['detector'])
            d['default_hooks'].get('checkpoint', {}).pop('save_best', None)
        out['detector'] = write_config(
            Config(d), osp.join(self.cfg_dir, 'detector.py'))
        if self.root_b:
            e = Config(d).to_dict()
            e['test_dataloader']['dataset']['data_root'] = self.root_b + '/'
            e['test_dataloader']['dataset']['ann_file'] = _split_ann(
                self.ann_b, 'test')
            _walk_replace(
                e['test_evaluator'], lambda k, v: _split_ann(self.ann_b,
                                                              'test')
                if k == 'ann_file' else v)
            out['detector_external'] = write_config(
                Config(e), osp.join(self.cfg_dir, 'detector_external.py'))
        for method, stem in METHODS:
            src = o.cls_configs.get(method) or _config_path(stem, o.schedule)
            c = Config.fromfile(src).to_dict()
            rebase_data_root(c, self.crop_dir)
            if o.toy:
                shorten_schedule(c, TOY_ITERS['classifier'])
            out[method] = write_config(
                Config(c), osp.join(self.cfg_dir, f'{method}.py'))
            for tname, split, _ in self.test_sets:
                t = Config(c).to_dict()
                t['test_dataloader']['dataset']['data_root'] = \
                    self.crop_dir + '/'
                t['test_dataloader']['dataset']['ann_file'] = f'{split}.json'
                eval_out = osp.join(self.eval_dir, f'{method}_{tname}')

                def fix_metric(m, split=split, eval_out=eval_out):
                    if isinstance(m, dict) and 'Diagnostic' in str(
                            m.get('type', '')):
                        m['missed'] = osp.join(self.crop_dir,
                                               f'{split}_missed.json')
                        m['output_dir'] = eval_out
                    return m

                ev = t['test_evaluator']
                t['test_evaluator'] = ([fix_metric(m) for m in ev]
                                       if isinstance(ev, list) else
                                       fix_metric(ev))
                out[f'{method}_{tname}'] = write_config(
                    Config(t),
                    osp.join(self.cfg_dir, f'{method}_test_{tname}.py'))
        return out

    # -- stages ---------------------------------------------------------------
    def data_stages(self) -> List[Stage]:
        o, st = self.o, []
        conv = _tool('tools/dataset_converters/bus_to_coco.py')
        splits = ['basic_train', 'extended_train', 'val', 'test']
        if o.format == 'synthetic':
            gen = synthetic_tool()
            sizes = SIZES['toy' if o.toy else 'full']
            for i, (h, n) in enumerate(sizes.items()):
                out = osp.join(o.data_root, h)
                # hospital B: another scanner style (the paper's independent
                # dataset B), another seed
                cmd = _py(gen, out, '--num-images', n, '--seed', o.seed + i,
                          '--style', 'b' if h == 'hospital_b' else 'a',
                          '--overwrite', '--no-progress')
                st.append(Stage(f'generate_{h}', cmd,
                                inputs=[gen], outputs=[out],
                                desc=f'synthetic {h} ({n} images)'))
            fmt = 'busi'
        else:
            fmt = o.format
        ratios = (['--ratios', TOY_RATIOS] if o.toy else [])
        st.append(Stage(
            'convert_a',
            _py(conv, self.root_a, '--format', fmt, '--out-dir', self.ann_a,
                '--seed', o.seed, '--balanced', 'basic_train,val', *ratios),
            inputs=[conv, self.root_a] if o.format != 'synthetic' else
            [conv, self.root_a],
            outputs=[_split_ann(self.ann_a, s) for s in splits],
            desc='COCO conversion + paper split of hospital A'))
        if self.root_b:
            st.append(Stage(
                'convert_b',
                _py(conv, self.root_b, '--format', o.external_format or fmt,
                    '--out-dir', self.ann_b, '--external-test'),
                inputs=[conv, self.root_b],
                outputs=[_split_ann(self.ann_b, 'test')],
                desc='COCO conversion of hospital B (external test)'))
        return st

    def model_stages(self, cfgs: Dict[str, str]) -> List[Stage]:
        o, st = self.o, []
        train, test = _tool('tools/train.py'), _tool('tools/test.py')
        splits = ['basic_train', 'extended_train', 'val', 'test']
        ann_a = [_split_ann(self.ann_a, s) for s in splits]
        st.append(Stage(
            'train_detector',
            _py(train, cfgs['detector'], '--work-dir', self.det_work),
            inputs=[cfgs['detector']] + ann_a,
            outputs=[osp.join(self.det_work, 'last_checkpoint')],
            work_dir=self.det_work,
            desc='stage 1: Faster R-CNN VGG16 on basic_train boxes'))

        def det_ckpt():
            return checkpoint_of(self.det_work)

        for tname, _, _ in self.test_sets:
            cfg = cfgs['detector' if tname == 'internal' else
                       'detector_external']
            base = osp.join(self.eval_dir, f'detector_{tname}')
            st.append(Stage(
                f'test_detector_{tname}',
                lambda cfg=cfg, base=base: _py(
                    test, cfg, det_ckpt(), '--work-dir', base, '--out',
                    base + '/predictions.pkl', '--out-metrics',
                    base + '/metrics.json'),
                inputs=lambda cfg=cfg: [cfg, det_ckpt()],
                outputs=[base + '/predictions.pkl', base + '/metrics.json'],
                desc=f'box IoU / COCO mAP on the {tname} test set'))
        extract = _tool('tools/extract_crops.py')
        ext = []
        if self.root_b:
            ext = ['--external-ann-file', _split_ann(self.ann_b, 'test'),
                   '--external-data-root', self.root_b]
        crop_splits = splits + (['test_external'] if self.root_b else [])
        st.append(Stage(
            'extract_crops',
            lambda: _py(extract, self.root_a, '--ann-dir',
                        osp.join(self.ann_a, 'annotations'), '--out-dir',
                        self.crop_dir, '--det-config', cfgs['detector'],
                        '--det-checkpoint', det_ckpt(), '--margin', o.margin,
                        '--score-thr', o.score_thr, '--device', o.device,
                        *ext),
            inputs=lambda: [cfgs['detector'], det_ckpt(), extract] + ann_a
            + ([_split_ann(self.ann_b, 'test')] if self.root_b else []),
            outputs=[osp.join(self.crop_dir, f'{s}.json')
                     for s in crop_splits],
            desc='crops: ground-truth boxes for basic_train/val, detector '
            'boxes for extended_train/test'))
        crop_jsons = [osp.join(self.crop_dir, f'{s}.json')
                      for s in crop_splits]
        for method, _ in METHODS:
            wd = self.cls_work[method]
            st.append(Stage(
                f'train_{method}',
                _py(train, cfgs[method], '--work-dir', wd),
                inputs=[cfgs[method]] + crop_jsons,
                outputs=[osp.join(wd, 'last_checkpoint')],
                work_dir=wd,
                desc=f'stage 2: {METHOD_TITLES[method]}'))
        exp = _tool('tools/export_teacher.py')
        export_dir = osp.join(o.work_dir, 'export')
        st.append(Stage(
            'export_teacher',
            lambda: _py(exp, cfgs['mean_teacher'],
                        checkpoint_of(self.cls_work['mean_teacher'], True),
                        '--out-dir', export_dir),
            inputs=lambda: [cfgs['mean_teacher'],
                            checkpoint_of(self.cls_work['mean_teacher'], True)],
            outputs=[osp.join(export_dir, 'teacher.pth'),
                     osp.join(export_dir, 'teacher_config.py')],
            desc='mean teacher -> plain mmpretrain ImageClassifier'))
        for method, _ in METHODS:
            for tname, split, _ in self.test_sets:
                base = osp.join(self.eval_dir, f'{method}_{tname}')
                cfg = cfgs[f'{method}_{tname}']
                st.append(Stage(
                    f'test_{method}_{tname}',
                    lambda cfg=cfg, base=base, method=method: _py(
                        test, cfg, checkpoint_of(self.cls_work[method], True),
                        '--work-dir', base, '--out',
                        base + '/predictions.pkl', '--out-metrics',
                        base + '/metrics.json'),
                    inputs=lambda cfg=cfg, method=method, split=split: [
                        cfg, checkpoint_of(self.cls_work[method], True),
                        osp.join(self.crop_dir, f'{split}.json'),
                        osp.join(self.crop_dir, f'{split}_missed.json')],
                    outputs=[base + '/predictions.pkl',
                             base + '/metrics.json'],
                    desc=f'{METHOD_TITLES[method]} on {tname} test'))
        return st

    def report_stage(self) -> Stage:
        from .report import make_report
        inputs = [osp.join(self.eval_dir, f'{m}_{t}', 'metrics.json')
                  for m, _ in METHODS for t, _, _ in self.test_sets]
        inputs += [osp.join(self.eval_dir, f'detector_{t}', 'metrics.json')
                   for t, _, _ in self.test_sets]
        inputs.append(osp.join(osp.dirname(osp.abspath(__file__)),
                               'report.py'))
        return Stage(
            'report',
            None,
            inputs=inputs,
            outputs=[osp.join(self.report_dir, 'report.md'),
                     osp.join(self.report_dir, 'report.json'),
                     osp.join(self.report_dir, 'roc_curves.png'),
                     osp.join(self.report_dir, 'detections.png')],
            func=lambda: make_report(self),
            desc='paper-style report (Markdown, PNG, JSON)')


def run_study(opts: StudyOptions) -> dict:
    """Build and run every stage; returns a summary dict."""
    os.makedirs(opts.work_dir, exist_ok=True)
    study = Study(opts)
    t0 = time.time()
    data = study.data_stages()
    print(f'[pipeline] work dir {opts.work_dir}; data {opts.data_root} '
          f'({opts.format}); schedule {opts.schedule}'
          f"{' (toy)' if opts.toy else ''}", flush=True)
    # configs are derived after the data exists only for naming; they do not
    # depend on the data's content, so they are written up front
    cfgs = study.write_configs()
    stages = data + study.model_stages(cfgs)
    stages.append(study.report_stage())
    records = []
    try:
        records = run_stages(stages, opts.work_dir, force=opts.force)
    finally:
        wall = time.time() - t0
        ran = sum(r['status'] == 'ran' for r in records)
        print(f'[pipeline] {ran} stage(s) ran, '
              f'{sum(r["status"] == "skipped" for r in records)} skipped, '
              f'wall time {wall:.0f} s', flush=True)
    return dict(records=records, wall_s=wall,
                report=osp.join(study.report_dir, 'report.md'))
