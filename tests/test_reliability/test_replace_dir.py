"""``mmbus.utils.io.replace_dir``: a finished temp folder moved onto the output folder, which holds
its old or its new content at every moment, never a mix and never nothing."""
import os
import stat

import pytest

from mmbus.utils import io as mio


def _tree(root):
    """{relative path: file text} of every file under ``root``."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            p = os.path.join(folder, f)
            with open(p) as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def _built(parent, name, files):
    tmp = mio.make_temp_dir(str(parent), '.' + name + '.')
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
        with open(os.path.join(tmp, rel), 'w') as fh:
            fh.write(text)
    return tmp


def test_target_absent(tmp_path):
    tmp = _built(tmp_path, 'out', {'a.txt': 'new', 'sub/b.txt': 'new b'})
    out = str(tmp_path / 'out')
    assert mio.replace_dir(tmp, out) == out
    assert _tree(out) == {'a.txt': 'new', os.path.join('sub', 'b.txt'): 'new b'}
    assert sorted(os.listdir(tmp_path)) == ['out']   # no temp or backup folder left
    assert stat.S_IMODE(os.stat(out).st_mode) == mio.dir_mode()


@pytest.mark.parametrize('trailing_sep', [False, True])
def test_target_present_is_replaced_entirely(tmp_path, trailing_sep):
    out = tmp_path / 'out'
    (out / 'old_sub').mkdir(parents=True)
    (out / 'a.txt').write_text('old')
    (out / 'old_only.txt').write_text('old')
    (out / 'old_sub' / 'c.txt').write_text('old')
    tmp = _built(tmp_path, 'out', {'a.txt': 'new'})
    mio.replace_dir(tmp, str(out) + (os.sep if trailing_sep else ''))
    assert _tree(out) == {'a.txt': 'new'}
    assert sorted(os.listdir(tmp_path)) == ['out']


def test_empty_target_is_replaced(tmp_path):
    (tmp_path / 'out').mkdir()
    tmp = _built(tmp_path, 'out', {'a.txt': 'new'})
    mio.replace_dir(tmp, str(tmp_path / 'out'))
    assert _tree(tmp_path / 'out') == {'a.txt': 'new'}
    assert sorted(os.listdir(tmp_path)) == ['out']


def test_failed_move_leaves_the_old_folder_intact(tmp_path, monkeypatch):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'a.txt').write_text('old')
    tmp = _built(tmp_path, 'out', {'a.txt': 'new'})
    real_rename = os.rename

    def rename(src, dst):
        if src == tmp:   # the move of the new folder fails (disk error, ...); the rest works
            raise OSError(f'injected failure moving {src}')
        return real_rename(src, dst)

    monkeypatch.setattr(os, 'rename', rename)
    with pytest.raises(OSError, match='injected'):
        mio.replace_dir(tmp, str(out))
    monkeypatch.undo()
    assert _tree(out) == {'a.txt': 'old'}
    # the backup was renamed back; only the caller's temp folder remains, with the new content
    assert sorted(os.listdir(tmp_path)) == sorted(['out', os.path.basename(tmp)])
    assert _tree(tmp) == {'a.txt': 'new'}


def test_failed_backup_touches_nothing(tmp_path, monkeypatch):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'a.txt').write_text('old')
    tmp = _built(tmp_path, 'out', {'a.txt': 'new'})

    def rename(src, dst):
        raise PermissionError(f'injected failure moving {src}')

    monkeypatch.setattr(os, 'rename', rename)
    with pytest.raises(PermissionError):
        mio.replace_dir(tmp, str(out))
    monkeypatch.undo()
    assert _tree(out) == {'a.txt': 'old'} and _tree(tmp) == {'a.txt': 'new'}


def test_a_file_in_the_way_is_refused_and_named(tmp_path):
    (tmp_path / 'out').write_text('a file')
    tmp = _built(tmp_path, 'out', {'a.txt': 'new'})
    with pytest.raises(NotADirectoryError, match='out exists and is not a folder'):
        mio.replace_dir(tmp, str(tmp_path / 'out'))
    assert (tmp_path / 'out').read_text() == 'a file'


def test_a_link_to_a_folder_is_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    (elsewhere / 'keep.txt').write_text('keep')
    os.symlink(str(elsewhere), str(tmp_path / 'out'))
    tmp = _built(tmp_path, 'out', {'a.txt': 'new'})
    mio.replace_dir(tmp, str(tmp_path / 'out'))
    assert not os.path.islink(tmp_path / 'out') and _tree(tmp_path / 'out') == {'a.txt': 'new'}
    assert _tree(elsewhere) == {'keep.txt': 'keep'}
    assert sorted(os.listdir(tmp_path)) == ['elsewhere', 'out']
