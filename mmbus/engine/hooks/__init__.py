from .mean_teacher_hook import MeanTeacherHook  # noqa: F401
from .two_phase_finetune_hook import TwoPhaseFineTuneHook  # noqa: F401
