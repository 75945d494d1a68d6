"""The documentation points at files that exist: every relative Markdown link and image in ``README.md``,
``docs/**/*.md`` and ``configs/**/README.md``, and every ``tools/...py|sh`` path named in ``README.md``,
``docs/*.md`` and ``configs/**/README.md`` (the dated notes under ``docs/notes/`` keep the commands of
their time)."""
import glob
import os.path as osp
import re
from urllib.parse import unquote

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: ``[text](target)`` and ``![alt](target)``; the target may carry a title: ``(path "title")``
LINK = re.compile(r'!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
#: ``[label]: target`` reference definitions
REF_DEF = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$')
#: a repository tool path, not the tail of a longer path (``my_project/tools/x.py``)
TOOL = re.compile(r'(?<![\w./-])(tools/[\w./-]+?\.(?:py|sh))(?![\w/-])')
FENCE = re.compile(r'^\s{0,3}(```|~~~)')
CODE_SPAN = re.compile(r'(`+)(?:(?!\1).)+?\1')


def _md_files(*patterns):
    files = set()
    for pattern in patterns:
        files.update(glob.glob(osp.join(REPO, pattern), recursive=True))
    return sorted(osp.relpath(f, REPO) for f in files if osp.isfile(f))


LINK_FILES = _md_files('README.md', 'docs/**/*.md', 'configs/**/README.md')
TOOL_FILES = _md_files('README.md', 'docs/*.md', 'configs/**/README.md')


def _prose_lines(path):
    """``(line number, text)`` of the lines outside fenced code blocks, inline code removed."""
    in_fence = None
    with open(osp.join(REPO, path), encoding='utf-8') as f:
        for num, line in enumerate(f, start=1):
            m = FENCE.match(line)
            if m:
                if in_fence is None:
                    in_fence = m.group(1)
                elif m.group(1) == in_fence:
                    in_fence = None
                continue
            if in_fence is None:
                yield num, CODE_SPAN.sub('', line)


def _is_external(target):
    return re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target) is not None or target.startswith('#')


def relative_links(path):
    """``(line number, target)`` of the relative links and images of one Markdown file."""
    out = []
    for num, line in _prose_lines(path):
        targets = LINK.findall(line)
        ref = REF_DEF.match(line)
        if ref:
            targets.append(ref.group(1))
        out += [(num, t) for t in targets if not _is_external(t)]
    return out


def _resolves(md_path, target):
    target = unquote(target.split('#', 1)[0].split('?', 1)[0])
    if not target:  # a bare anchor of this file
        return True
    base = REPO if target.startswith('/') else osp.join(REPO, osp.dirname(md_path))
    return osp.exists(osp.normpath(osp.join(base, target.lstrip('/'))))


def test_link_parser_on_known_forms(tmp_path):
    md = tmp_path / 'x.md'
    md.write_text('See [a](docs/a.md), ![img](../images/x.png "title"), [b](<c.md#part>), '
                  '[web](https://example.org), [anchor](#top), `[code](not/a/link.md)`.\n'
                  '```\n[in fence](not/a/link.md)\n```\n'
                  '[ref]: docs/ref.md\n')
    assert [t for _, t in relative_links(str(md))] == \
        ['docs/a.md', '../images/x.png', 'c.md#part', 'docs/ref.md']
    assert TOOL.findall('run tools/train.py, my_project/tools/x.py and tools/gpu/run_busbra.sh.') == \
        ['tools/train.py', 'tools/gpu/run_busbra.sh']


@pytest.mark.parametrize('md_path', LINK_FILES)
def test_relative_links_resolve(md_path):
    broken = [f'{md_path}:{num}: {target}' for num, target in relative_links(md_path)
              if not _resolves(md_path, target)]
    assert not broken, 'links to files that do not exist:\n' + '\n'.join(broken)


@pytest.mark.parametrize('md_path', TOOL_FILES)
def test_named_tools_exist(md_path):
    missing = []
    with open(osp.join(REPO, md_path), encoding='utf-8') as f:
        for num, line in enumerate(f, start=1):
            missing += [f'{md_path}:{num}: {p}' for p in TOOL.findall(line)
                        if not osp.isfile(osp.join(REPO, p))]
    assert not missing, 'tools named in the documentation that do not exist:\n' + '\n'.join(missing)


def test_the_checked_files_are_found():
    assert 'README.md' in LINK_FILES and 'docs/troubleshooting.md' in TOOL_FILES
    assert any(p.startswith('docs/notes/') for p in LINK_FILES)
    assert any(p.startswith('configs/') for p in LINK_FILES)
