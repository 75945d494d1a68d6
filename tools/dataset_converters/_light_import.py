"""Let the data CLIs import ``mmbus.datasets.converters`` / ``mmbus.datasets.synthetic``
without running ``mmbus/__init__.py``, which registers every model and imports torch, mmdet and
mmpretrain (5-15 s of start-up on a busy machine). The converters need only numpy, Pillow and
OpenCV.

Only used when a CLI runs as a script (``__main__``): then the process holds nothing else,
so the placeholder packages cannot hide the real ones from other code.
"""
import os
import sys
import types

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def install() -> None:
    if 'mmbus' in sys.modules:      # the real package is loaded already: nothing to do
        return
    for name, sub in (('mmbus', ()), ('mmbus.datasets', ('datasets', ))):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(REPO, 'mmbus', *sub)]
        pkg.__file__ = os.path.join(pkg.__path__[0], '__init__.py')
        sys.modules[name] = pkg
