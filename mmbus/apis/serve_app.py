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

Uploads are checked before any model sees them (:func:`decode_upload`); a
bad file gets a 4xx answer with a message saying what is wrong. Anything
that fails inside the models is logged with its traceback on the server
console and answered with a generic 500 message: tracebacks never reach the
page.

The HTTP side and running it in-process live here; the other pieces, all
importable from this module, are

* :mod:`mmbus.apis.serve_upload`: the upload checks and limits;
* :mod:`mmbus.apis.serve_analyser`: the models and the JSON answer
  (:class:`Analyser`);
* :mod:`mmbus.apis.serve_labels`: the operating points and the headline in
  plain words.
"""
import logging
import os.path as osp
import threading
import time
from typing import Optional

from .serve_analyser import (CAM_PARITY_TOLERANCE, RESEARCH_NOTICE, Analyser,
                             png_data_url)
from .serve_labels import describe_operating_point, headline, operating_points
from .serve_upload import (ACCEPTED_FORMATS, MAX_SIDE, MAX_UPLOAD_BYTES,
                           MIN_SIDE, SIXTEEN_BIT_HELP, InputError, _mb,
                           decode_upload)

__all__ = [
    'create_app', 'BackgroundServer', 'find_chromium', 'Analyser',
    'png_data_url', 'decode_upload', 'InputError', 'describe_operating_point',
    'operating_points', 'headline', 'MAX_UPLOAD_BYTES', 'MAX_SIDE',
    'MIN_SIDE', 'ACCEPTED_FORMATS', 'SIXTEEN_BIT_HELP',
    'CAM_PARITY_TOLERANCE', 'RESEARCH_NOTICE', 'STATIC_DIR'
]

logger = logging.getLogger('mmbus.serve')

STATIC_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'static')


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
