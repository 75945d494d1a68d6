from .checkpoint_check_hook import CheckpointCheckHook  # noqa: F401
from .deadline_hook import DeadlineHook  # noqa: F401
from .iter_patience_early_stopping_hook import IterPatienceEarlyStoppingHook  # noqa: F401
from .mean_teacher_hook import MeanTeacherHook  # noqa: F401
from .random_state_hook import RandomStateHook  # noqa: F401
from .smoothed_metric_hook import SmoothedMetricHook  # noqa: F401
from .train_data_check_hook import TrainDataCheckHook  # noqa: F401
from .two_phase_finetune_hook import TwoPhaseFineTuneHook  # noqa: F401
