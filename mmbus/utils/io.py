"""Small file helpers shared by the tools."""
import json
import os
import os.path as osp
import tempfile


def atomic_write_json(obj, path, **json_kwargs):
    """Write ``obj`` as JSON to ``path`` atomically: a reader (or a crash) never sees a partial file."""
    path = osp.abspath(path)
    os.makedirs(osp.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.', suffix='.tmp', dir=osp.dirname(path))
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(obj, f, **json_kwargs)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
