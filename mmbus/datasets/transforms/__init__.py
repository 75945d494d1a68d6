from .letterbox import LetterboxResize  # noqa: F401
