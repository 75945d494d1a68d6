"""Small file helpers shared by the tools."""
import json
import os
import os.path as osp
import tempfile


def atomic_write(path, write_fn):
    """Call ``write_fn(tmp_path)`` on a temp file beside ``path``, then rename it onto ``path``.

    A reader (or a crash) never sees a partial file. The temp name keeps ``path``'s extension, so writers
    that pick a format from it (matplotlib, mmengine's Config.dump) work unchanged.
    """
    path = osp.abspath(path)
    os.makedirs(osp.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp' + osp.splitext(path)[1], dir=osp.dirname(path))
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(obj, path, **json_kwargs):
    """Write ``obj`` as JSON to ``path`` atomically."""

    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(obj, f, **json_kwargs)

    atomic_write(path, write)
