"""mmbus: semi-supervised breast ultrasound nodule detection and recognition for OpenMMLab."""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    with open(osp.join(HERE, 'mmbus', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def read_requirements(name):
    """Requirement lines of requirements/<name>.txt (comments and blanks dropped)."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


setup(
    name='mmbus',
    version=read_version(),
    description='Semi-supervised breast ultrasound nodule detection and benign/malignant '
                'recognition (Faster R-CNN + mean teacher) for MMDetection / MMPretrain',
    long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(
        osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'configs', 'tools')),
    # the browser page served by tools/serve.py
    package_data={'mmbus.apis': ['static/*.html']},
    python_requires='>=3.8',
    install_requires=[r for r in read_requirements('build.txt') if not r.startswith(
        ('setuptools', 'wheel'))] + read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    license='Apache-2.0',
    zip_safe=False,
)
