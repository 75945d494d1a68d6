"""Hooks and optimiser wrappers (registered by :mod:`mmbus.registry`)."""
#: environment variable holding a Unix time at which every training run ends cleanly (DeadlineHook); here,
#: so that launchers (the study engine, the GPU kit) can name it without importing torch
DEADLINE_ENV = 'MMBUS_STOP_AT'
#: file DeadlineHook leaves in the work dir of a run it stopped (removed when training starts again): the study
#: engine then resumes that run on a rerun instead of taking it as finished
DEADLINE_MARKER = 'stopped_at_deadline'
