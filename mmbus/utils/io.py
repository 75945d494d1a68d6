"""Small file helpers shared by the tools: atomic writers whose files get the permissions the umask gives.

``tempfile.mkstemp`` creates files with mode 0600 and ``tempfile.mkdtemp`` directories with mode 0700, and a
rename keeps that mode; the writers here set the mode an ordinary ``open()`` / ``os.makedirs()`` would have
given (``0o666`` / ``0o777`` minus the umask) before the rename, so results stay readable by the group and
others exactly when the user's umask says so.
"""
import json
import os
import os.path as osp
import shutil
import tempfile


def current_umask() -> int:
    """The process umask: read from ``/proc/self/status`` where there is one (without changing it, so no other
    thread creates a file under a wrong umask meanwhile), else set and restored (``os.umask`` can only be read
    by setting it)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (``0o644`` under umask 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new directory under the current umask (``0o755`` under umask 022)."""
    return 0o777 & ~current_umask()


def make_dirs(path: str) -> str:
    """``os.makedirs(path, exist_ok=True)`` (the umask applies); returns ``path``."""
    if path:
        os.makedirs(path, exist_ok=True)
    return path


def make_temp_dir(parent: str, prefix: str) -> str:
    """A hidden temp directory under ``parent`` with the umask's directory mode (``mkdtemp`` gives 0700),
    for building an output folder that is renamed into place when complete."""
    make_dirs(parent)
    tmp = tempfile.mkdtemp(dir=parent, prefix=prefix)
    os.chmod(tmp, dir_mode())
    return tmp


def replace_dir(tmp_dir: str, out_dir: str) -> str:
    """Rename the finished folder ``tmp_dir`` (from :func:`make_temp_dir`, on the same file system)
    onto ``out_dir``; returns ``out_dir``.

    A reader never sees a half-written folder, and ``out_dir`` always holds either its old or its
    new content: an existing ``out_dir`` is first renamed aside, and renamed back if the new folder
    cannot be moved in; only once the new one is in place is the old one deleted. ``tmp_dir`` is
    left for the caller to remove on failure. Raises ``NotADirectoryError`` naming ``out_dir`` when
    it exists and is not a folder.
    """
    out_dir = out_dir.rstrip(os.sep) or out_dir   # 'a/b/' + '.old-' would name a file inside b
    old = None
    if osp.lexists(out_dir):
        if not osp.isdir(out_dir):
            raise NotADirectoryError(f'{out_dir} exists and is not a folder')
        # tmp_dir's name is unique, so is this one
        old = out_dir + '.old-' + osp.basename(tmp_dir)
        os.rename(out_dir, old)
    try:
        os.rename(tmp_dir, out_dir)
    except BaseException:
        if old is not None:
            os.rename(old, out_dir)
        raise
    if old is not None:
        if osp.islink(old):   # a link to a folder: drop the link, never the folder it points to
            os.remove(old)
        else:
            shutil.rmtree(old, ignore_errors=True)
    return out_dir


def atomic_write(path, write_fn):
    """Call ``write_fn(tmp_path)`` on a temp file beside ``path``, then rename it onto ``path``.

    A reader (or a crash) never sees a partial file. The temp name keeps ``path``'s extension, so writers
    that pick a format from it (matplotlib, mmengine's Config.dump, cv2.imwrite) work unchanged. The file
    gets the mode the umask gives (not ``mkstemp``'s 0600).
    """
    path = osp.abspath(path)
    make_dirs(osp.dirname(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp' + osp.splitext(path)[1], dir=osp.dirname(path))
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_json(obj, path, **json_kwargs):
    """Write ``obj`` as JSON to ``path`` atomically."""

    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(obj, f, **json_kwargs)

    return atomic_write(path, write)


def atomic_write_text(text: str, path, newline=None):
    """Write ``text`` to ``path`` atomically (``newline`` as for :func:`open`)."""

    def write(tmp):
        with open(tmp, 'w', newline=newline) as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)`` atomically: a killed export never leaves a truncated checkpoint."""
    import torch
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_imwrite(img, path):
    """Write an image (format from ``path``'s extension) atomically; raises ``OSError`` naming ``path``
    when the encoder fails."""
    import cv2

    def write(tmp):
        if not cv2.imwrite(tmp, img):
            raise OSError(f'could not encode image {path}')

    return atomic_write(path, write)
