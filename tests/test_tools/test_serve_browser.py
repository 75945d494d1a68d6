"""The page of tools/serve.py in a real browser: the system Chromium driven
by Playwright against the app served by uvicorn on a free local port.

Run with ``pytest -m browser tests/test_tools/test_serve_browser.py``
(excluded from the default run). Screenshots go to ``$MMBUS_ARTEFACTS_DIR``
when set, else to pytest's tmp dir; the folder is printed (``-s``).
"""
import os
import os.path as osp
import re

import numpy as np
import pytest

pytest.importorskip('fastapi')
pytest.importorskip('uvicorn')
pytest.importorskip('multipart')
pytest.importorskip('onnxruntime')
pytest.importorskip('playwright', reason='needs the playwright package')

from mmbus.apis.serve_app import (Analyser, BackgroundServer,  # noqa: E402
                                  create_app, find_chromium)
from test_serve import encode, make_tiny_models, us_image  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = find_chromium()


@pytest.fixture(scope='module')
def artefacts(tmp_path_factory):
    d = os.environ.get('MMBUS_ARTEFACTS_DIR') or str(
        tmp_path_factory.mktemp('serve_browser'))
    os.makedirs(d, exist_ok=True)
    print(f'\nbrowser test screenshots: {d}')
    return d


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('serve_browser_models'))
    app = create_app(Analyser(**make_tiny_models(d)))
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture(scope='module')
def page(server):
    if CHROMIUM is None:
        pytest.skip('no Chromium executable found (looked for chromium and '
                    'chromium-browser on PATH; apt-get install chromium)')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            pg = browser.new_page(viewport=dict(width=1280, height=900))
            pg.goto(server.url + '/')
            yield pg
        finally:
            browser.close()


def test_good_then_bad_then_good(page, artefacts, tmp_path):
    from playwright.sync_api import expect
    good = tmp_path / 'scan.png'
    good.write_bytes(encode(us_image()))
    bad = tmp_path / 'notes.png'  # a text file named like an image
    bad.write_bytes(b'not an image\n' * 20)
    sixteen = tmp_path / 'scan16.png'
    sixteen.write_bytes(encode(us_image().astype(np.uint16) * 257))

    expect(page.locator('#notice')).to_contain_text('not a diagnostic device')
    expect(page.locator('#limits')).to_contain_text('20 MB')

    page.set_input_files('#file', str(good))
    expect(page.locator('#result')).to_be_visible(timeout=60000)
    prob = page.locator('#probability')
    expect(prob).to_have_text(re.compile(r'^\d+\.\d %$'))
    assert 0.0 <= float(prob.get_attribute('data-value')) <= 1.0
    # the test bundle's thresholds: sensitivity_0.95 = 0, sensitivity_0.90 = 1
    expect(page.locator('#label-text')).to_have_text(
        'At or above the 95 %-sensitivity threshold (0.000): biopsy range')
    expect(page.locator('#ops')).to_contain_text(
        '90 %-sensitivity threshold')
    expect(page.locator('#cam')).to_be_visible()
    assert page.locator('#annotated').evaluate('e => e.naturalWidth') == 128
    page.screenshot(path=osp.join(artefacts, 'good.png'), full_page=True)

    page.set_input_files('#file', str(bad))
    msg = page.locator('#message')
    expect(msg).to_have_class('error', timeout=30000)
    expect(msg).to_contain_text('"notes.png" is not an image that can be '
                                'read')
    expect(page.locator('#result')).to_be_hidden()
    page.screenshot(path=osp.join(artefacts, 'not_an_image.png'),
                    full_page=True)

    page.set_input_files('#file', str(sixteen))
    expect(msg).to_contain_text('is a 16-bit image', timeout=30000)
    page.screenshot(path=osp.join(artefacts, 'sixteen_bit.png'),
                    full_page=True)

    page.set_input_files('#file', str(good))  # the server is still up
    expect(page.locator('#result')).to_be_visible(timeout=60000)
    expect(page.locator('#label-text')).to_contain_text('biopsy range')
    for name in ('good.png', 'not_an_image.png', 'sixteen_bit.png'):
        assert osp.getsize(osp.join(artefacts, name)) > 0
