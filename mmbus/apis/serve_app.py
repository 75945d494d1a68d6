"""A small web app to try the two-stage model on one ultrasound image.

``create_app(analyser)`` returns a FastAPI app with

* ``GET /``: one static page (``mmbus/apis/static/index.html``, no
  external fonts or scripts, so it works on a machine without internet);
* ``GET /health``: ``{"status": "ok", ...}`` with the operating points, the
  upload limits and whether class-activation maps are available;
* ``POST /api/analyse``: a multipart upload (field ``file``) -> JSON with
  the detector box and score, the calibrated malignancy probability, the
  label at every operating point, a plain-words label text and two PNG
  images as data URLs (the image with the box, the CAM over the crop).

:class:`Analyser` holds the models, loaded once: the detector (mmdet), the
portable recogniser bundle (:class:`~mmbus.apis.bundle.BundleClassifier`,
which gives the calibrated probability and the operating points) and,
optionally, the PyTorch classifier the bundle was exported from, used only
for the class-activation map (the ONNX graph has no gradients). When that
classifier is given, its raw probability is compared with the bundle's and
a mismatch is reported on the page: the map would otherwise explain a
different model than the one whose probability is shown.

Uploads are checked before any model sees them (:func:`decode_upload`); a
bad file gets a 4xx answer with a message saying what is wrong. Anything
that fails inside the models is logged with its traceback on the server
console and answered with a generic 500 message: tracebacks never reach the
page.

16-bit images are refused, not converted: an 8-bit copy needs a choice of
grey-level window (full range / 257, the used range, a DICOM window ...),
and a choice that differs from how the training images were made shifts
the probability without any visible sign. The message gives the value
range found and a conversion command, so the person converting decides.
"""
import base64
import io
import logging
import os.path as osp
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from mmbus.classes import CLASSES

logger = logging.getLogger('mmbus.serve')

STATIC_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'static')
#: Upload limits (overridable per app): file size and the longer image side.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
#: Shorter sides than this leave the detector nothing to look at.
MIN_SIDE = 32
ACCEPTED_FORMATS = ('PNG', 'JPEG')
#: The CAM model's raw probability may differ from the bundle's by float32
#: and resize rounding; more than this means they are different models.
CAM_PARITY_TOLERANCE = 0.01
RESEARCH_NOTICE = ('Research use only: not a diagnostic device, not cleared '
                   'or approved by any regulator. The result must be reviewed '
                   'by a qualified reader.')


class InputError(ValueError):
    """A bad upload: ``status`` is the HTTP status of the answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _mb(n: float) -> str:
    return f'{n / 1024 / 1024:.1f} MB'


SIXTEEN_BIT_HELP = (
    'Convert it to an 8-bit PNG with the grey-level window your images were '
    'trained with, e.g. for a full-range image: python -c "import cv2; '
    "im = cv2.imread('in.png', cv2.IMREAD_UNCHANGED); "
    "cv2.imwrite('out.png', (im // 257).astype('uint8'))\" "
    '(or ImageMagick: convert in.png -depth 8 out.png).')


def decode_upload(data: bytes, filename: str = 'upload',
                  max_bytes: int = MAX_UPLOAD_BYTES,
                  max_side: int = MAX_SIDE,
                  min_side: int = MIN_SIDE) -> np.ndarray:
    """Check an uploaded file and decode it to a BGR ``uint8`` ``HxWx3``
    array, as ``mmcv.imread`` gives the command-line tools (grey images are
    replicated to 3 channels, an alpha channel is dropped, the JPEG EXIF
    orientation is applied).

    The image header is read first (Pillow, lazily): format, size and the
    pixel-count guard come before any pixel is decoded, so a small file that
    claims a huge image costs no memory.

    Raises:
        InputError: empty, too large, not a PNG / JPEG, too many or too few
            pixels, 16-bit, or undecodable; the message says which.
    """
    import cv2
    from PIL import Image
    name = osp.basename(filename or 'upload')
    if not data:
        raise InputError(f'"{name}" is an empty file (0 bytes): choose an '
                         'ultrasound image (PNG or JPEG).')
    if len(data) > max_bytes:
        raise InputError(f'"{name}" is {_mb(len(data))}; the limit is '
                         f'{_mb(max_bytes)}. Export a smaller PNG or JPEG.',
                         413)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format, im.size
    except Image.DecompressionBombError:
        raise InputError(f'"{name}" claims an image of more than '
                         f'{Image.MAX_IMAGE_PIXELS} pixels; the limit is '
                         f'{max_side} px per side.', 413) from None
    except Exception:  # Pillow raises several types for non-images
        raise InputError(f'"{name}" is not an image that can be read (its '
                         'content is not PNG or JPEG data, whatever its name '
                         'says). Choose an ultrasound image saved as PNG or '
                         'JPEG.', 415) from None
    if fmt not in ACCEPTED_FORMATS:
        raise InputError(f'"{name}" is a {fmt} image; only PNG and JPEG are '
                         'accepted. Save it as PNG.', 415)
    if max(width, height) > max_side:
        raise InputError(f'"{name}" is {width} x {height} px; the limit is '
                         f'{max_side} px per side. Downscale it first.', 413)
    if min(width, height) < min_side:
        raise InputError(f'"{name}" is {width} x {height} px; at least '
                         f'{min_side} px per side are needed.', 422)
    buf = np.frombuffer(data, np.uint8)
    raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise InputError(f'"{name}" could not be decoded: the {fmt} file is '
                         'truncated or corrupt.', 422)
    if raw.dtype != np.uint8:
        bits = raw.dtype.itemsize * 8
        raise InputError(
            f'"{name}" is a {bits}-bit image (values {int(raw.min())} to '
            f'{int(raw.max())}); the model takes 8-bit images and a 16-bit '
            'image is not converted here, because the right grey-level '
            f'window is not known. {SIXTEEN_BIT_HELP}', 422)
    # IMREAD_COLOR as mmcv.imread: EXIF orientation, grey -> 3 channels,
    # alpha dropped (a 4th channel is transparency, not tissue)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f'"{name}" could not be decoded as a colour or grey '
                         'image.', 422)
    return img


def png_data_url(img: np.ndarray, rgb: bool = False) -> str:
    """PNG data URL of a ``uint8`` image (BGR unless ``rgb``)."""
    import cv2
    if rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, enc = cv2.imencode('.png', img)
    if not ok:
        raise RuntimeError('PNG encoding failed')
    return 'data:image/png;base64,' + base64.b64encode(
        enc.tobytes()).decode('ascii')


# ----------------------------------------------------------------------------
# operating points in plain words
# ----------------------------------------------------------------------------
def _target(name: str, kind: str) -> Optional[float]:
    if not name.startswith(kind + '_'):
        return None
    try:
        return float(name[len(kind) + 1:])
    except ValueError:
        return None


def _pct(x: float) -> str:
    return f'{x * 100:.0f} %' if float(x * 100).is_integer() else \
        f'{x * 100:g} %'


def describe_operating_point(name: str, threshold: float) -> Dict:
    """Short title and meaning of one operating point of a bundle."""
    sens, spec = _target(name, 'sensitivity'), _target(name, 'specificity')
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


# ----------------------------------------------------------------------------
# the models
# ----------------------------------------------------------------------------
class Analyser:
    """Detector + recogniser bundle (+ optional CAM classifier), loaded once.

    Args:
        det_config, det_checkpoint: the trained mmdet detector.
        bundle_dir: a folder written by :func:`mmbus.apis.bundle.
            export_bundle` (calibrated probability, operating points).
        cls_config, cls_checkpoint: optional, the PyTorch classifier the
            bundle was exported from; only for the class-activation map.
        device: 'cpu' or 'cuda:0' (detector and CAM classifier; the bundle
            runs with onnxruntime on the CPU).
        score_thr: minimum detection score of a nodule.
        margin, relative_margin: crop margin, as in ``tools/infer.py``.
    """

    def __init__(self, det_config: str, det_checkpoint: str, bundle_dir: str,
                 cls_config: Optional[str] = None,
                 cls_checkpoint: Optional[str] = None,
                 device: str = 'cpu', score_thr: float = 0.05,
                 margin: float = 10., relative_margin: float = 0.):
        from .bundle import BundleClassifier
        from .crop_extraction import DetectorBoxes, load_detector
        if (cls_config is None) != (cls_checkpoint is None):
            raise ValueError('give both --cls-config and --cls-checkpoint '
                             '(for the class-activation map) or neither')
        self.detector = load_detector(det_config, det_checkpoint, device)
        self.boxes = DetectorBoxes(self.detector, score_thr, keep='top')
        self.score_thr = float(score_thr)
        self.bundle = BundleClassifier(bundle_dir)
        self.margin, self.relative_margin = margin, relative_margin
        self.cam_model, self.cam_note = None, None
        if cls_config is None:
            self.cam_note = ('no class-activation map: the server was '
                             'started without --cls-config / '
                             '--cls-checkpoint')
        else:
            try:
                from . import explain  # noqa: F401  (needs grad-cam)
                import pytorch_grad_cam  # noqa: F401
            except ImportError as e:
                self.cam_note = f'no class-activation map: {e}'
            else:
                from mmengine.registry import DefaultScope

                from .export import load_plain_classifier
                with DefaultScope.overwrite_default_scope('mmpretrain'):
                    self.cam_model, _ = load_plain_classifier(
                        cls_config, cls_checkpoint, device)
        # one request at a time through the models: neither torch modules
        # with hooks (Grad-CAM) nor the detector are safe to share
        self.lock = threading.Lock()
        src = self.bundle.info.get('source') or {}
        self.model_info = dict(
            detector=osp.basename(det_checkpoint),
            bundle=osp.basename(osp.normpath(bundle_dir)),
            recogniser=src.get('checkpoint'),
            temperature=self.bundle.temperature,
            cam=self.cam_model is not None)

    def _cam(self, crop: np.ndarray, raw_prob: float):
        from .explain import cam_for_crops, overlay
        maps, scores = cam_for_crops(self.cam_model, [crop], target_class=1,
                                     return_scores=True)
        ov = overlay(crop, maps[0])
        note = None
        diff = abs(float(scores[0][1]) - raw_prob)
        if diff > CAM_PARITY_TOLERANCE:
            note = (f'the class-activation map comes from a classifier whose '
                    f'probability ({float(scores[0][1]):.3f}) differs from '
                    f"the bundle's ({raw_prob:.3f}): it may explain a "
                    'different model than the one scored here')
        return ov, note

    def analyse(self, img: np.ndarray) -> Dict:
        """Both stages on one BGR image; the JSON answer of the API."""
        from .crop_extraction import crop_nodule
        from .inference import draw_result
        h, w = img.shape[:2]
        out = dict(status='ok', width=int(w), height=int(h),
                   score_thr=self.score_thr, box=None, crop_box=None,
                   det_score=None, probability=None, raw_probability=None,
                   operating_points=[], label=None, label_text=None,
                   image=None, cam=None, cam_note=self.cam_note,
                   notice=RESEARCH_NOTICE)
        t0 = time.perf_counter()
        with self.lock:
            boxes = self.boxes(dict(file_name='upload'), img)
            if not boxes:
                out.update(status='no_nodule',
                           label_text='No nodule found (no detection scored '
                                      f'{self.score_thr:g} or more).',
                           image=png_data_url(draw_result(
                               img, dict(nodules=[]))))
                out['seconds'] = round(time.perf_counter() - t0, 3)
                return out
            box, score = boxes[0]
            crop, cbox = crop_nodule(img, box, self.margin,
                                     self.relative_margin)
            pred = self.bundle.predict([crop])[0]
            p = float(pred['malignancy_prob'])
            cam_url = None
            if self.cam_model is not None:
                ov, note = self._cam(crop, float(pred['raw_prob']))
                cam_url = png_data_url(ov, rgb=True)
                out['cam_note'] = note
        ops = operating_points(p, self.bundle.thresholds,
                               self.bundle.classes)
        head = headline(p, ops)
        # the box is labelled neutrally: the label depends on the operating
        # point, which the page states in words
        nodule = dict(bbox=[float(v) for v in box], malignancy_prob=p,
                      label='nodule')
        out.update(box=[round(float(v), 2) for v in box], crop_box=cbox,
                   det_score=round(float(score), 6), probability=p,
                   raw_probability=float(pred['raw_prob']),
                   operating_points=ops, label=head,
                   label_text=head['text'],
                   image=png_data_url(draw_result(img, dict(nodules=[nodule]))),
                   cam=cam_url)
        out['seconds'] = round(time.perf_counter() - t0, 3)
        return out

    def describe(self) -> Dict:
        ops = [describe_operating_point(k, v)
               for k, v in self.bundle.thresholds.items()]
        return dict(models=self.model_info, operating_points=ops,
                    cam_note=self.cam_note)


# ----------------------------------------------------------------------------
# the app
# ----------------------------------------------------------------------------
def _error(status: int, message: str):
    from fastapi.responses import JSONResponse
    return JSONResponse(status_code=status,
                        content=dict(status='error', error=message))


def create_app(analyser, max_bytes: int = MAX_UPLOAD_BYTES,
               max_side: int = MAX_SIDE, min_side: int = MIN_SIDE):
    """The FastAPI app around an :class:`Analyser` (or any object with
    ``analyse(img) -> dict`` and ``describe() -> dict``)."""
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title='mmbus: breast-ultrasound nodule analysis',
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.analyser = analyser
    limits = dict(max_bytes=max_bytes, max_side=max_side, min_side=min_side,
                  formats=list(ACCEPTED_FORMATS))
    # the body of a request larger than this is not read at all (headers
    # of the multipart envelope fit in the slack)
    envelope_slack = 64 * 1024

    @app.middleware('http')
    async def refuse_large_bodies(request: Request, call_next):
        size = request.headers.get('content-length')
        if request.url.path == '/api/analyse' and size and size.isdigit() \
                and int(size) > max_bytes + envelope_slack:
            return _error(413, f'The upload is {_mb(int(size))}; the limit '
                               f'is {_mb(max_bytes)}. Export a smaller PNG '
                               'or JPEG.')
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc):
        return _error(400, 'No image was sent: upload the file as the '
                           'multipart form field "file".')

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc):
        logger.error('unhandled error on %s', request.url.path,
                     exc_info=exc)
        return _error(500, 'Internal server error (details are in the '
                           'server log).')

    @app.get('/')
    def page():
        return FileResponse(osp.join(STATIC_DIR, 'index.html'),
                            media_type='text/html')

    @app.get('/health')
    def health():
        return dict(status='ok', limits=limits, notice=RESEARCH_NOTICE,
                    **analyser.describe())

    @app.post('/api/analyse')
    def analyse(file: UploadFile = File(...)):
        # sync handler: FastAPI runs it in a worker thread, so a slow model
        # does not block the page or /health
        data = file.file.read(max_bytes + 1)
        try:
            img = decode_upload(data, file.filename or 'upload', max_bytes,
                                max_side, min_side)
        except InputError as e:
            logger.info('refused %r: %s', file.filename, e.message)
            return _error(e.status, e.message)
        try:
            return analyser.analyse(img)
        except Exception:
            logger.exception('analysis failed on %r (%d x %d px)',
                             file.filename, img.shape[1], img.shape[0])
            return _error(500, 'The analysis failed on the server (the '
                               'error is in the server log). Try another '
                               'image; if every image fails, tell the '
                               'person running the server.')

    return app


# ----------------------------------------------------------------------------
# running it in-process (browser test, screenshot command)
# ----------------------------------------------------------------------------
class BackgroundServer:
    """uvicorn serving ``app`` in a daemon thread; ``with`` starts it, waits
    until it accepts requests and stops it on exit. ``port=0`` picks a free
    port (read ``url`` after start)."""

    def __init__(self, app, host: str = '127.0.0.1', port: int = 0,
                 timeout: float = 30.0):
        import socket
        if port == 0:  # ask the OS for a free port
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        import uvicorn
        self.server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_level='warning'))
        self.url = f'http://{host}:{port}'
        self.timeout = timeout
        self.thread = None

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f'the server did not start on {self.url}')
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout)


def find_chromium() -> Optional[str]:
    """Path of a system Chromium (``chromium``, ``chromium-browser``), or
    ``None``."""
    import shutil
    for name in ('chromium', 'chromium-browser'):
        path = shutil.which(name)
        if path:
            return path
    return None
