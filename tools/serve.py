"""Serve a browser page to try the two-stage model on one image.

Start it from trained models::

    python tools/serve.py --det-config DET_CFG --det-checkpoint DET.pth \\
        --bundle BUNDLE_DIR [--cls-config CLS_CFG --cls-checkpoint CLS.pth] \\
        [--host 127.0.0.1 --port 8000]

and open http://127.0.0.1:8000/ . ``--bundle`` is a folder written by
``tools/export_bundle.py`` (calibrated probability and operating points);
``--cls-config`` / ``--cls-checkpoint`` (the classifier the bundle was
exported from) add the class-activation map.

``--screenshot PNG --screenshot-image IMG`` instead starts the server on a
free local port, opens the page in the system Chromium (Playwright), uploads
IMG, writes a screenshot of the page with the result to PNG and exits; this
is how ``docs/images/serve_page.png`` is made. It needs the ``playwright``
Python package and a ``chromium`` executable (``apt-get install chromium``).

The page and the API are for research use only: not a diagnostic device.
"""
import argparse
import logging
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmbus.apis.serve_app import (MAX_SIDE, MAX_UPLOAD_BYTES,  # noqa: E402
                                  Analyser, BackgroundServer, create_app,
                                  find_chromium)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Browser page for the two-stage '
                                'breast-ultrasound model (research use only)')
    p.add_argument('--det-config', required=True)
    p.add_argument('--det-checkpoint', required=True)
    p.add_argument('--bundle', required=True,
                   help='recogniser bundle folder (tools/export_bundle.py)')
    p.add_argument('--cls-config', help='classifier config, for the '
                   'class-activation map (with --cls-checkpoint)')
    p.add_argument('--cls-checkpoint')
    p.add_argument('--host', default='127.0.0.1',
                   help='default 127.0.0.1 (this machine only); 0.0.0.0 '
                   'opens it to the network, with no authentication')
    p.add_argument('--port', type=int, default=8000)
    p.add_argument('--device', default='cpu')
    p.add_argument('--score-thr', type=float, default=0.05,
                   help='minimum detection score of a nodule')
    p.add_argument('--margin', type=float, default=10.,
                   help='pixels of tissue kept around the box (default 10)')
    p.add_argument('--max-mb', type=float, default=MAX_UPLOAD_BYTES / 2**20,
                   help='upload size limit in MB (default %(default)g)')
    p.add_argument('--max-side', type=int, default=MAX_SIDE,
                   help='image size limit in px per side (default '
                   '%(default)d)')
    p.add_argument('--screenshot', metavar='PNG',
                   help='write a screenshot of the page with the result for '
                   '--screenshot-image to PNG and exit')
    p.add_argument('--screenshot-image', metavar='IMG')
    args = p.parse_args(argv)
    if args.screenshot and not args.screenshot_image:
        p.error('--screenshot needs --screenshot-image')
    return args


def screenshot(app, image: str, out: str) -> None:
    """Upload ``image`` through the page in the system Chromium and save a
    full-page screenshot to ``out``."""
    from playwright.sync_api import sync_playwright
    chromium = find_chromium()
    if chromium is None:
        sys.exit('error: no chromium executable found (apt-get install '
                 'chromium)')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    with BackgroundServer(app) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page(viewport=dict(width=1280, height=900))
            page.goto(srv.url + '/')
            page.set_input_files('#file', image)
            page.wait_for_selector('#result', state='visible', timeout=120000)
            page.screenshot(path=out, full_page=True)
        finally:
            browser.close()
    print(f'screenshot written: {out}')


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s: '
                        '%(message)s')
    try:
        analyser = Analyser(args.det_config, args.det_checkpoint, args.bundle,
                            args.cls_config, args.cls_checkpoint,
                            device=args.device, score_thr=args.score_thr,
                            margin=args.margin)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    if analyser.cam_note:
        print(f'note: {analyser.cam_note}')
    app = create_app(analyser, max_bytes=int(args.max_mb * 2**20),
                     max_side=args.max_side)
    if args.screenshot:
        screenshot(app, args.screenshot_image, args.screenshot)
        return
    import uvicorn
    print(f'serving on http://{args.host}:{args.port}/ (Ctrl-C stops it)')
    uvicorn.run(app, host=args.host, port=args.port, log_level='info')


if __name__ == '__main__':
    main()
