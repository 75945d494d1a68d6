"""Helpers of the fault-injection tests (imported by name: pytest puts this folder on sys.path)."""
import importlib.util
import os
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    """Import ``tools/<name>.py`` as a module (its ``main(argv)`` runs in this process)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def exit_message(excinfo) -> str:
    """Text of a ``sys.exit(message)``."""
    code = excinfo.value.code
    return code if isinstance(code, str) else str(code)


class Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted checkpoint can do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))
