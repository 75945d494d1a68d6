"""Hooks and optimiser wrappers (registered by :mod:`mmbus.registry`)."""
import os
import time
from typing import Optional

#: environment variable holding a Unix time at which every training run ends cleanly (DeadlineHook); here,
#: so that launchers (the study engine, the GPU kit) can name it without importing torch
DEADLINE_ENV = 'MMBUS_STOP_AT'
#: file DeadlineHook leaves in the work dir of a run it stopped (removed when training starts again): the study
#: engine then resumes that run on a rerun instead of taking it as finished
DEADLINE_MARKER = 'stopped_at_deadline'
#: a training run is not started with less time than this before its deadline: the few iterations it could make
#: would be tested and reported beside runs that trained (a run queued behind others in a study with a deadline)
MIN_TRAIN_S = 60


def parse_deadline(value, where: str) -> Optional[float]:
    """A deadline as a Unix time in seconds (``value``: a number or its text); None when unset or empty. A value
    that is not a number is refused with a message naming ``where`` it came from."""
    if value is None or value == '':
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: expected a Unix time in seconds, got {value!r}') from None


def seconds_to_deadline(env: Optional[dict] = None) -> Optional[float]:
    """Seconds from now to ``$MMBUS_STOP_AT`` in ``env`` (else this process's environment); None without one, or
    with a value that is not a number (DeadlineHook refuses that with its own message)."""
    try:
        stop_at = parse_deadline((os.environ if env is None else env).get(DEADLINE_ENV), DEADLINE_ENV)
    except ValueError:
        return None
    return None if stop_at is None else stop_at - time.time()
