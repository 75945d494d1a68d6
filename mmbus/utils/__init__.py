from .distributed import setup_distributed  # noqa: F401
from .io import atomic_write, atomic_write_json  # noqa: F401
